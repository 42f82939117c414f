/* health.c — grpc.health.v1.Health: Check and Watch for the services "" (the whole server) and
 * "qquant.v1.Inference". Both are SERVING from start-up until drain begins, then NOT_SERVING. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct watcher {
  qq_call *call; /* referenced */
  char *service;
  struct watcher *next;
} watcher;

struct qq_health {
  pthread_mutex_t mu;
  bool serving;
  bool closed; /* shutting down: no new watchers */
  watcher *watchers;
};

qq_status qq_health_create(qq_health **out, qq_error *err) {
  qq_health *h = calloc(1, sizeof *h);
  if (!h) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&h->mu, NULL);
  *out = h;
  return QQ_OK;
}

void qq_health_free(qq_health *h) {
  if (!h) return;
  for (watcher *w = h->watchers, *n; w; w = n) {
    n = w->next;
    qq_call_unref(w->call);
    free(w->service);
    free(w);
  }
  pthread_mutex_destroy(&h->mu);
  free(h);
}

static bool known_service(const char *s) { return !s[0] || !strcmp(s, "qquant.v1.Inference"); }

static Grpc__Health__V1__HealthCheckResponse__ServingStatus status_of(const qq_health *h, const char *service) {
  if (!known_service(service)) return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
  return h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void send_status(qq_call *c, Grpc__Health__V1__HealthCheckResponse__ServingStatus st) {
  Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  r.status = st;
  qq_call_send(c, &r.base);
}

void qq_health_set_serving(qq_health *h, bool serving) {
  pthread_mutex_lock(&h->mu);
  if (h->serving != serving) {
    h->serving = serving;
    for (watcher *w = h->watchers; w; w = w->next)
      if (known_service(w->service)) send_status(w->call, status_of(h, w->service));
  }
  pthread_mutex_unlock(&h->mu);
}

static Grpc__Health__V1__HealthCheckRequest *decode(qq_call *c, const uint8_t *data, size_t len) {
  Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, data);
  if (!r) {
    qq_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid grpc.health.v1.HealthCheckRequest");
    return NULL;
  }
  qq_error err = {0};
  if (qq_validate_health(r, &err)) {
    qq_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, err.msg);
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
    return NULL;
  }
  return r;
}

void qq_health_check(qq_call *c, const uint8_t *data, size_t len) {
  qq_health *h = qq_server_health(qq_call_server(c));
  Grpc__Health__V1__HealthCheckRequest *r = decode(c, data, len);
  if (!r) return;
  if (!known_service(r->service)) {
    qq_call_finish(c, GRPC_STATUS_NOT_FOUND, "unknown service (known: \"\" and \"qquant.v1.Inference\")");
  } else {
    pthread_mutex_lock(&h->mu);
    Grpc__Health__V1__HealthCheckResponse__ServingStatus st = status_of(h, r->service);
    pthread_mutex_unlock(&h->mu);
    send_status(c, st);
    qq_call_finish(c, GRPC_STATUS_OK, "");
  }
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
}

void qq_health_watch(qq_call *c, const uint8_t *data, size_t len) {
  qq_health *h = qq_server_health(qq_call_server(c));
  Grpc__Health__V1__HealthCheckRequest *r = decode(c, data, len);
  if (!r) return;
  watcher *w = calloc(1, sizeof *w);
  char *svc = strdup(r->service);
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
  if (!w || !svc) {
    free(w);
    free(svc);
    qq_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "server out of memory");
    return;
  }
  pthread_mutex_lock(&h->mu);
  if (h->closed) {
    pthread_mutex_unlock(&h->mu);
    free(w);
    free(svc);
    qq_call_finish(c, GRPC_STATUS_UNAVAILABLE, "server shutting down");
    return;
  }
  w->call = c;
  w->service = svc;
  qq_call_ref(c);
  w->next = h->watchers;
  h->watchers = w;
  send_status(c, status_of(h, svc));
  pthread_mutex_unlock(&h->mu);
}

void qq_health_call_closed(qq_server *srv, qq_call *c) {
  qq_health *h = qq_server_health(srv);
  if (!h) return;
  watcher *gone = NULL;
  pthread_mutex_lock(&h->mu);
  for (watcher **p = &h->watchers; *p; p = &(*p)->next) {
    if ((*p)->call == c) {
      gone = *p;
      *p = gone->next;
      break;
    }
  }
  pthread_mutex_unlock(&h->mu);
  if (gone) {
    qq_call_unref(gone->call);
    free(gone->service);
    free(gone);
  }
}

void qq_health_close_watchers(qq_health *h, int grpc_code, const char *msg) {
  pthread_mutex_lock(&h->mu);
  h->closed = true;
  watcher *all = h->watchers;
  h->watchers = NULL;
  pthread_mutex_unlock(&h->mu);
  for (watcher *w = all, *n; w; w = n) {
    n = w->next;
    qq_call_finish(w->call, grpc_code, msg);
    qq_call_unref(w->call);
    free(w->service);
    free(w);
  }
}
