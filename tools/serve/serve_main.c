/* qquant-serve — serves a checkpoint over gRPC (qquant.v1.Inference, health, reflection) with
 * Prometheus metrics over HTTP. SIGTERM / SIGINT drain: health turns NOT_SERVING, new work gets
 * UNAVAILABLE, in-flight requests have --drain-seconds to finish, then the process exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "qq_common.h"
#include "service.h"

/* Written by the signal handler, read by main: the only process-wide state, as signals are. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig) {
  unsigned char b = (unsigned char)sig;
  int saved = errno;
  (void)!write(sig_pipe[1], &b, 1);
  errno = saved;
}

int main(int argc, char **argv) {
  qq_kernels_setup_openblas(argv);
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
  /* SIGTERM / SIGINT only write a byte to a pipe that this thread waits on: a handler (rather than
   * blocking the signals and sigwait) because threads that exist before main() (OpenBLAS's pool) would
   * otherwise take the default action and kill the process. A second signal during the drain is
   * ignored the same way. SIGPIPE: a client that vanished mid-write is an error on that socket only. */
  if (pipe(sig_pipe)) {
    perror("qquant-serve: pipe");
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  qq_server *srv = NULL;
  if (qq_server_start(&cfg, &srv, &err)) {
    QQ_LOGE("serve", "%s", err.msg);
    return 1;
  }
  printf("qquant-serve: listening on %s:%d, metrics on port %d\n", cfg.host, qq_server_port(srv),
         qq_server_metrics_port(srv));
  fflush(stdout);
  unsigned char sig = 0;
  while (read(sig_pipe[0], &sig, 1) < 0 && errno == EINTR) {
  }
  QQ_LOGI("serve", "received %s: draining for up to %d s", sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.drain_seconds);
  qq_error derr = {0};
  if (qq_server_drain(srv, &derr)) QQ_LOGW("serve", "%s", derr.msg);
  qq_server_free(srv);
  return 0;
}
