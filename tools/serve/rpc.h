/* rpc.h — the small grpc core client the serve tools share (qquant-client, qquant-bench). */
#ifndef QQ_TOOLS_RPC_H
#define QQ_TOOLS_RPC_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Opens a channel to target ("127.0.0.1:50051"). ca (PEM file) enables TLS; cert+key add a client
 * certificate (mTLS). Returns NULL with a message in err on failure. */
grpc_channel *qq_rpc_connect(const char *target, const char *ca, const char *cert, const char *key, char *err,
                             size_t err_cap);

/* Called for each response message; return nonzero to cancel the call (the status then is CANCELLED). */
typedef int (*qq_rpc_on_message)(void *user, const uint8_t *data, size_t len);

/* Calls method with one request message (a server-streaming or unary call), delivering every response to
 * on_msg. timeout_s <= 0: no deadline. Returns the call's status code; detail gets its message. */
grpc_status_code qq_rpc_call(grpc_channel *ch, const char *method, const ProtobufCMessage *req, double timeout_s,
                             qq_rpc_on_message on_msg, void *user, char *detail, size_t detail_cap);

/* Same with raw request bytes (tests send malformed messages). */
grpc_status_code qq_rpc_call_raw(grpc_channel *ch, const char *method, const uint8_t *data, size_t len,
                                 double timeout_s, qq_rpc_on_message on_msg, void *user, char *detail,
                                 size_t detail_cap);

const char *qq_rpc_status_name(grpc_status_code c);

#endif
