/* log.c — leveled logging to stderr, human lines or JSON lines (QQ_LOG_FORMAT=json). */
#include "qq_common.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
/* Process-wide logging configuration: set once at startup by the tools, read by every thread. */
static qq_log_level log_level = QQ_LOG_INFO;
static bool log_json = false;

static const char *level_name(qq_log_level l) {
  switch (l) {
    case QQ_LOG_DEBUG: return "debug";
    case QQ_LOG_INFO: return "info";
    case QQ_LOG_WARN: return "warn";
    case QQ_LOG_ERROR: return "error";
  }
  return "info";
}

void qq_log_init_from_env(void) {
  const char *lv = getenv("QQ_LOG_LEVEL");
  if (lv) {
    if (!strcmp(lv, "debug")) log_level = QQ_LOG_DEBUG;
    else if (!strcmp(lv, "info")) log_level = QQ_LOG_INFO;
    else if (!strcmp(lv, "warn")) log_level = QQ_LOG_WARN;
    else if (!strcmp(lv, "error")) log_level = QQ_LOG_ERROR;
  }
  const char *fmt = getenv("QQ_LOG_FORMAT");
  if (fmt) log_json = !strcmp(fmt, "json");
}

void qq_log_set_level(qq_log_level level) { log_level = level; }
void qq_log_set_json(bool json) { log_json = json; }
bool qq_log_enabled(qq_log_level level) { return level >= log_level; }

void qq_log(qq_log_level level, const char *component, const char *fmt, ...) {
  if (level < log_level) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);

  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

  pthread_mutex_lock(&log_mu);
  if (log_json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", when);
    cJSON_AddStringToObject(o, "level", level_name(level));
    cJSON_AddStringToObject(o, "component", component ? component : "");
    cJSON_AddStringToObject(o, "msg", msg);
    char *line = cJSON_PrintUnformatted(o);
    if (line) {
      fprintf(stderr, "%s\n", line);
      cJSON_free(line);
    }
    cJSON_Delete(o);
  } else {
    fprintf(stderr, "%s %-5s [%s] %s\n", when, level_name(level), component ? component : "", msg);
  }
  fflush(stderr);
  pthread_mutex_unlock(&log_mu);
}

double qq_now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double qq_wall_clock_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
