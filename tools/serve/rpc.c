/* rpc.c — a blocking grpc core client call: one request, a stream of responses, a status. Each call
 * uses its own pluck completion queue, so threads can run calls on one channel at once. */
#include "rpc.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  if (b) b[n] = 0;
  fclose(f);
  return b;
}

grpc_channel *qq_rpc_connect(const char *target, const char *ca, const char *cert, const char *key, char *err,
                             size_t err_cap) {
  grpc_channel_credentials *creds;
  grpc_arg args[2] = {
      {.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = 64 << 20},
      {.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_ENABLE_RETRIES, .value.integer = 0},
  };
  grpc_channel_args cargs = {2, args};
  if (ca && ca[0]) {
    char *ca_pem = read_all(ca), *cert_pem = NULL, *key_pem = NULL;
    if (!ca_pem) {
      snprintf(err, err_cap, "cannot read CA file %s", ca);
      return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair;
    if (cert && cert[0]) {
      cert_pem = read_all(cert);
      key_pem = key ? read_all(key) : NULL;
      if (!cert_pem || !key_pem) {
        snprintf(err, err_cap, "cannot read client certificate %s or key %s", cert, key ? key : "(none)");
        free(ca_pem);
        free(cert_pem);
        free(key_pem);
        return NULL;
      }
      pair.private_key = key_pem;
      pair.cert_chain = cert_pem;
    }
    creds = grpc_ssl_credentials_create(ca_pem, cert_pem ? &pair : NULL, NULL, NULL);
    free(ca_pem);
    free(cert_pem);
    free(key_pem);
  } else {
    creds = grpc_insecure_credentials_create();
  }
  grpc_channel *ch = grpc_channel_create(target, creds, &cargs);
  grpc_channel_credentials_release(creds);
  if (!ch) snprintf(err, err_cap, "cannot create a channel to %s", target);
  return ch;
}

static grpc_event pluck(grpc_completion_queue *cq, void *tag) {
  return grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

grpc_status_code qq_rpc_call_raw(grpc_channel *ch, const char *method, const uint8_t *data, size_t len,
                                 double timeout_s, qq_rpc_on_message on_msg, void *user, char *detail,
                                 size_t detail_cap) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  gpr_timespec deadline = timeout_s > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                                       gpr_time_from_micros((int64_t)(timeout_s * 1e6), GPR_TIMESPAN))
                                        : gpr_inf_future(GPR_CLOCK_REALTIME);
  grpc_slice m = grpc_slice_from_copied_string(method);
  grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
  grpc_slice_unref(m);
  grpc_slice body = grpc_slice_from_copied_buffer((const char *)data, len);
  grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&body, 1);
  grpc_slice_unref(body);
  grpc_metadata_array md_in, md_trail;
  grpc_metadata_array_init(&md_in);
  grpc_metadata_array_init(&md_trail);
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();

  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = req;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_in;
  int tag_send = 1, tag_msg = 2, tag_status = 3;
  grpc_call_start_batch(call, ops, 4, &tag_send, NULL);
  pluck(cq, &tag_send);
  grpc_byte_buffer_destroy(req);

  for (;;) {
    grpc_byte_buffer *resp = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &resp;
    grpc_call_start_batch(call, &op, 1, &tag_msg, NULL);
    grpc_event ev = pluck(cq, &tag_msg);
    if (!ev.success || !resp) break;
    grpc_byte_buffer_reader rd;
    grpc_byte_buffer_reader_init(&rd, resp);
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    int stop = on_msg ? on_msg(user, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all)) : 0;
    grpc_slice_unref(all);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(resp);
    if (stop) {
      grpc_call_cancel(call, NULL);
      break;
    }
  }
  grpc_op st;
  memset(&st, 0, sizeof st);
  st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  st.data.recv_status_on_client.trailing_metadata = &md_trail;
  st.data.recv_status_on_client.status = &status;
  st.data.recv_status_on_client.status_details = &details;
  grpc_call_start_batch(call, &st, 1, &tag_status, NULL);
  pluck(cq, &tag_status);
  if (detail && detail_cap) {
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n >= detail_cap) n = detail_cap - 1;
    memcpy(detail, GRPC_SLICE_START_PTR(details), n);
    detail[n] = 0;
  }
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&md_in);
  grpc_metadata_array_destroy(&md_trail);
  grpc_call_unref(call);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  return status;
}

grpc_status_code qq_rpc_call(grpc_channel *ch, const char *method, const ProtobufCMessage *req, double timeout_s,
                             qq_rpc_on_message on_msg, void *user, char *detail, size_t detail_cap) {
  size_t n = protobuf_c_message_get_packed_size(req);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    if (detail && detail_cap) snprintf(detail, detail_cap, "out of memory");
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  protobuf_c_message_pack(req, buf);
  grpc_status_code c = qq_rpc_call_raw(ch, method, buf, n, timeout_s, on_msg, user, detail, detail_cap);
  free(buf);
  return c;
}

const char *qq_rpc_status_name(grpc_status_code c) {
  static const char *const names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                      "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return (unsigned)c < sizeof names / sizeof names[0] ? names[c] : "UNKNOWN";
}
