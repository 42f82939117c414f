/* qquant-serve — serves a checkpoint over gRPC (qquant.v1.Inference, health, reflection) with
 * Prometheus metrics over HTTP. SIGTERM / SIGINT drain: health turns NOT_SERVING, new work gets
 * UNAVAILABLE, in-flight requests have --drain-seconds to finish, then the process exits 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qq_common.h"
#include "service.h"

int main(int argc, char **argv) {
  qq_cpu_setup_openblas(argv);
  qq_log_init_from_env();
  qq_service_config cfg;
  qq_service_config_default(&cfg);
  qq_error err = {0};
  bool help = false;
  if (qq_service_config_parse(&cfg, argc, argv, NULL, &help, &err)) {
    fprintf(stderr, "qquant-serve: %s\n", err.msg);
    return 2;
  }
  if (help) {
    fputs(qq_service_config_usage(), stdout);
    return 0;
  }
  if (cfg.log_json) qq_log_set_json(true);
  /* Signals are taken synchronously by this thread (sigwait); every thread started below inherits the
   * mask, so no handler runs inside grpc or the engine. SIGPIPE: a client that vanished mid-write is an
   * error on that socket, not the end of the process. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  qq_server *srv = NULL;
  if (qq_server_start(&cfg, &srv, &err)) {
    QQ_LOGE("serve", "%s", err.msg);
    return 1;
  }
  printf("qquant-serve: listening on %s:%d, metrics on port %d\n", cfg.host, qq_server_port(srv),
         qq_server_metrics_port(srv));
  fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  QQ_LOGI("serve", "received %s: draining for up to %d s", sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.drain_seconds);
  qq_error derr = {0};
  if (qq_server_drain(srv, &derr)) QQ_LOGW("serve", "%s", derr.msg);
  qq_server_free(srv);
  return 0;
}
