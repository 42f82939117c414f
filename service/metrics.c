/* metrics.c — Prometheus metrics (text exposition format 0.0.4) and the small HTTP listener that
 * serves them at GET /metrics on their own port, in their own thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "internal.h"

#define N_CODES 17
static const char *const CODE_NAMES[N_CODES] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};

#define MAX_BUCKETS 16
typedef struct histogram {
  const double *bounds;
  int n;
  uint64_t counts[MAX_BUCKETS + 1];
  double sum;
  uint64_t count;
} histogram;

/* Bucket bounds: latencies in seconds, batch sizes in sequences. */
static const double LAT_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double TOK_BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2};
static const double BATCH_BOUNDS[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

struct qq_metrics {
  pthread_mutex_t mu;
  uint64_t requests[QQ_M_COUNT][N_CODES];
  histogram duration[QQ_M_COUNT];
  histogram ttft, tpot, batch, step;
  uint64_t prompt_tokens, generated_tokens, steps;
  int32_t queue_depth, active, kv_used, kv_total, serving;
  /* tokens/s over a sliding window of engine steps */
  double win_start;
  uint64_t win_tokens;
  double tokens_per_s;
};

static void hist_init(histogram *h, const double *b, int n) {
  memset(h, 0, sizeof *h);
  h->bounds = b;
  h->n = n;
}
static void hist_add(histogram *h, double v) {
  int i = 0;
  while (i < h->n && v > h->bounds[i]) i++;
  h->counts[i]++;
  h->sum += v;
  h->count++;
}

qq_status qq_metrics_create(qq_metrics **out, qq_error *err) {
  qq_metrics *m = calloc(1, sizeof *m);
  if (!m) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&m->mu, NULL);
  for (int i = 0; i < QQ_M_COUNT; i++) hist_init(&m->duration[i], LAT_BOUNDS, QQ_ARRAY_LEN(LAT_BOUNDS));
  hist_init(&m->ttft, LAT_BOUNDS, QQ_ARRAY_LEN(LAT_BOUNDS));
  hist_init(&m->tpot, TOK_BOUNDS, QQ_ARRAY_LEN(TOK_BOUNDS));
  hist_init(&m->step, TOK_BOUNDS, QQ_ARRAY_LEN(TOK_BOUNDS));
  hist_init(&m->batch, BATCH_BOUNDS, QQ_ARRAY_LEN(BATCH_BOUNDS));
  m->win_start = qq_now_sec();
  *out = m;
  return QQ_OK;
}

void qq_metrics_free(qq_metrics *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->mu);
  free(m);
}

void qq_metrics_request(qq_metrics *m, qq_method method, int code, double seconds) {
  if (!m || method <= QQ_M_UNKNOWN || method >= QQ_M_COUNT) return;
  if (code < 0 || code >= N_CODES) code = 2; /* UNKNOWN */
  pthread_mutex_lock(&m->mu);
  m->requests[method][code]++;
  hist_add(&m->duration[method], seconds);
  pthread_mutex_unlock(&m->mu);
}

void qq_metrics_ttft(qq_metrics *m, double s) {
  pthread_mutex_lock(&m->mu);
  hist_add(&m->ttft, s);
  pthread_mutex_unlock(&m->mu);
}

void qq_metrics_tpot(qq_metrics *m, double s) {
  pthread_mutex_lock(&m->mu);
  hist_add(&m->tpot, s);
  pthread_mutex_unlock(&m->mu);
}

void qq_metrics_step(qq_metrics *m, int32_t seqs, int32_t tokens, double seconds) {
  pthread_mutex_lock(&m->mu);
  hist_add(&m->batch, seqs);
  hist_add(&m->step, seconds);
  m->steps++;
  pthread_mutex_unlock(&m->mu);
}

void qq_metrics_tokens(qq_metrics *m, int64_t prompt, int64_t generated) {
  pthread_mutex_lock(&m->mu);
  m->prompt_tokens += (uint64_t)prompt;
  m->generated_tokens += (uint64_t)generated;
  m->win_tokens += (uint64_t)generated;
  double now = qq_now_sec();
  if (now - m->win_start >= 1.0) { /* one-second windows */
    m->tokens_per_s = (double)m->win_tokens / (now - m->win_start);
    m->win_tokens = 0;
    m->win_start = now;
  }
  pthread_mutex_unlock(&m->mu);
}

void qq_metrics_gauges(qq_metrics *m, int32_t q, int32_t active, int32_t kv_used, int32_t kv_total) {
  pthread_mutex_lock(&m->mu);
  m->queue_depth = q;
  m->active = active;
  m->kv_used = kv_used;
  m->kv_total = kv_total;
  pthread_mutex_unlock(&m->mu);
}

void qq_metrics_set_state(qq_metrics *m, int serving) {
  pthread_mutex_lock(&m->mu);
  m->serving = serving;
  pthread_mutex_unlock(&m->mu);
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
  bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < b->cap - b->n) {
      b->n += (size_t)k;
      return;
    }
    size_t nc = b->cap * 2 + (size_t)k;
    char *q = realloc(b->p, nc);
    if (!q) {
      b->oom = true;
      return;
    }
    b->p = q;
    b->cap = nc;
  }
}

static void hist_print(sbuf *b, const char *name, const char *labels, const histogram *h) {
  uint64_t cum = 0;
  const char *sep = labels[0] ? "," : "";
  for (int i = 0; i < h->n; i++) {
    cum += h->counts[i];
    sb_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[i], (unsigned long long)cum);
  }
  cum += h->counts[h->n];
  sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
  if (labels[0])
    sb_printf(b, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels, (unsigned long long)h->count);
  else
    sb_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
}

qq_status qq_metrics_render(qq_metrics *m, char **out, size_t *len, qq_error *err) {
  sbuf b = {malloc(8192), 0, 8192, false};
  if (!b.p) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  b.p[0] = 0;
  pthread_mutex_lock(&m->mu);
  sb_printf(&b, "# HELP qquant_requests_total RPCs finished, by method and gRPC status code.\n"
                "# TYPE qquant_requests_total counter\n");
  for (int i = 1; i < QQ_M_COUNT; i++)
    for (int c = 0; c < N_CODES; c++)
      if (m->requests[i][c] || c == 0)
        sb_printf(&b, "qquant_requests_total{method=\"%s\",code=\"%s\"} %llu\n", qq_method_name((qq_method)i),
                  CODE_NAMES[c], (unsigned long long)m->requests[i][c]);
  sb_printf(&b, "# HELP qquant_request_duration_seconds Time from a call's arrival to its status.\n"
                "# TYPE qquant_request_duration_seconds histogram\n");
  for (int i = 1; i < QQ_M_COUNT; i++) {
    char lab[64];
    snprintf(lab, sizeof lab, "method=\"%s\"", qq_method_name((qq_method)i));
    hist_print(&b, "qquant_request_duration_seconds", lab, &m->duration[i]);
  }
  sb_printf(&b, "# HELP qquant_time_to_first_token_seconds Generate: arrival to first generated token.\n"
                "# TYPE qquant_time_to_first_token_seconds histogram\n");
  hist_print(&b, "qquant_time_to_first_token_seconds", "", &m->ttft);
  sb_printf(&b, "# HELP qquant_time_per_output_token_seconds Generate: mean time between tokens after the first, per request.\n"
                "# TYPE qquant_time_per_output_token_seconds histogram\n");
  hist_print(&b, "qquant_time_per_output_token_seconds", "", &m->tpot);
  sb_printf(&b, "# HELP qquant_batch_size Sequences in one engine step.\n# TYPE qquant_batch_size histogram\n");
  hist_print(&b, "qquant_batch_size", "", &m->batch);
  sb_printf(&b, "# HELP qquant_step_duration_seconds Duration of one engine step (forward + sampling).\n"
                "# TYPE qquant_step_duration_seconds histogram\n");
  hist_print(&b, "qquant_step_duration_seconds", "", &m->step);
  sb_printf(&b,
            "# HELP qquant_tokens_total Tokens processed, by kind.\n# TYPE qquant_tokens_total counter\n"
            "qquant_tokens_total{kind=\"prompt\"} %llu\nqquant_tokens_total{kind=\"generated\"} %llu\n"
            "# HELP qquant_generated_tokens_per_second Generated tokens per second over the last window (about 1 s).\n"
            "# TYPE qquant_generated_tokens_per_second gauge\nqquant_generated_tokens_per_second %.3f\n"
            "# HELP qquant_engine_steps_total Engine forward steps.\n# TYPE qquant_engine_steps_total counter\n"
            "qquant_engine_steps_total %llu\n"
            "# HELP qquant_queue_depth Requests waiting for the engine.\n# TYPE qquant_queue_depth gauge\nqquant_queue_depth %d\n"
            "# HELP qquant_active_sequences Sequences the engine is running.\n# TYPE qquant_active_sequences gauge\n"
            "qquant_active_sequences %d\n"
            "# HELP qquant_kv_blocks_used KV cache blocks reserved by running requests.\n# TYPE qquant_kv_blocks_used gauge\n"
            "qquant_kv_blocks_used %d\n"
            "# HELP qquant_kv_blocks_total KV cache blocks.\n# TYPE qquant_kv_blocks_total gauge\nqquant_kv_blocks_total %d\n"
            "# HELP qquant_kv_usage_ratio Fraction of the KV cache reserved.\n# TYPE qquant_kv_usage_ratio gauge\n"
            "qquant_kv_usage_ratio %.4f\n"
            "# HELP qquant_serving 1 while serving, 0 while draining.\n# TYPE qquant_serving gauge\nqquant_serving %d\n",
            (unsigned long long)m->prompt_tokens, (unsigned long long)m->generated_tokens,
            qq_now_sec() - m->win_start > 5.0 ? 0.0 : m->tokens_per_s, (unsigned long long)m->steps, m->queue_depth,
            m->active, m->kv_used, m->kv_total, m->kv_total ? (double)m->kv_used / m->kv_total : 0.0, m->serving);
  pthread_mutex_unlock(&m->mu);
  if (b.oom) {
    free(b.p);
    return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  *out = b.p;
  *len = b.n;
  return QQ_OK;
}

/* ------------------------------------------------------------------ HTTP */

struct qq_http {
  int fd;
  qq_metrics *m;
  pthread_t thread;
  atomic_bool stop;
};

static void http_reply(int fd, const char *status, const char *ctype, const char *body, size_t len) {
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                   ctype, len);
  (void)!write(fd, head, (size_t)n);
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, body + off, len - off);
    if (w <= 0) break;
    off += (size_t)w;
  }
}

static void http_serve_one(qq_http *h, int fd) {
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  char req[4096];
  size_t n = 0;
  while (n < sizeof req - 1) {
    ssize_t r = read(fd, req + n, sizeof req - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
    req[n] = 0;
    if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
  }
  req[n] = 0;
  if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13)) {
    char *body = NULL;
    size_t len = 0;
    if (qq_metrics_render(h->m, &body, &len, NULL) == QQ_OK) {
      http_reply(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, len);
      free(body);
    } else {
      http_reply(fd, "500 Internal Server Error", "text/plain", "out of memory\n", 14);
    }
  } else if (!strncmp(req, "GET ", 4)) {
    http_reply(fd, "404 Not Found", "text/plain", "not found (try /metrics)\n", 25);
  } else {
    http_reply(fd, "405 Method Not Allowed", "text/plain", "only GET\n", 9);
  }
}

static void *http_thread(void *arg) {
  qq_http *h = arg;
  while (!atomic_load(&h->stop)) {
    struct pollfd p = {h->fd, POLLIN, 0};
    int r = poll(&p, 1, 100);
    if (r <= 0) continue;
    int fd = accept(h->fd, NULL, NULL);
    if (fd < 0) continue;
    http_serve_one(h, fd);
    close(fd);
  }
  return NULL;
}

qq_status qq_http_start(const char *host, int32_t port, qq_metrics *m, qq_http **out, int32_t *bound, qq_error *err) {
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  int gr = getaddrinfo(host, ps, &hints, &ai);
  if (gr) return qq_error_set(err, QQ_ERR_INVALID_ARG, "metrics: cannot resolve host '%s': %s", host, gai_strerror(gr));
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(ai);
    return qq_error_set(err, QQ_ERR_IO, "metrics: socket: %s", strerror(errno));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* TIME_WAIT only; no SO_REUSEPORT */
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
    int e = errno;
    freeaddrinfo(ai);
    close(fd);
    return qq_error_set(err, QQ_ERR_IO, "metrics: cannot listen on %s:%d: %s", host, port, strerror(e));
  }
  freeaddrinfo(ai);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
  qq_http *h = calloc(1, sizeof *h);
  if (!h) {
    close(fd);
    return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  h->fd = fd;
  h->m = m;
  atomic_init(&h->stop, false);
  if (pthread_create(&h->thread, NULL, http_thread, h)) {
    close(fd);
    free(h);
    return qq_error_set(err, QQ_ERR_INTERNAL, "metrics: cannot start the HTTP thread");
  }
  *out = h;
  return QQ_OK;
}

void qq_http_stop(qq_http *h) {
  if (!h) return;
  atomic_store(&h->stop, true);
  pthread_join(h->thread, NULL);
  close(h->fd);
  free(h);
}
