/* reflection.c — grpc.reflection.v1alpha.ServerReflection over the FileDescriptorSet that protoc wrote
 * at build time (proto/CMakeLists.txt embeds it as qq_proto_descriptor_set). Generic clients (grpcurl,
 * grpc_cli, Postman) list the services and fetch the .proto definitions from here.
 *
 * The set is read with a small protobuf wire-format walker: only the fields needed to find which file
 * defines a symbol (package, message/enum/service names, nested types, methods) and its imports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

extern const unsigned char qq_proto_descriptor_set[];
extern const size_t qq_proto_descriptor_set_len;

static const char *const SERVICES[] = {"qquant.v1.Inference", "grpc.health.v1.Health",
                                       "grpc.reflection.v1alpha.ServerReflection"};

typedef struct span {
  const uint8_t *p;
  size_t n;
} span;

/* Reads the next field of a message; returns false at the end or on malformed input. For
 * length-delimited fields *val holds the bytes; other wire types are skipped over (val empty). */
static bool next_field(span *s, uint32_t *field, uint32_t *wire, span *val) {
  uint64_t key = 0;
  int shift = 0;
  while (1) {
    if (!s->n || shift > 63) return false;
    uint8_t b = *s->p++;
    s->n--;
    key |= (uint64_t)(b & 0x7f) << shift;
    shift += 7;
    if (!(b & 0x80)) break;
  }
  *field = (uint32_t)(key >> 3);
  *wire = (uint32_t)(key & 7);
  val->p = NULL;
  val->n = 0;
  uint64_t len = 0;
  shift = 0;
  switch (*wire) {
    case 0:
      while (1) {
        if (!s->n) return false;
        uint8_t b = *s->p++;
        s->n--;
        if (!(b & 0x80)) break;
      }
      return true;
    case 1:
      if (s->n < 8) return false;
      s->p += 8;
      s->n -= 8;
      return true;
    case 5:
      if (s->n < 4) return false;
      s->p += 4;
      s->n -= 4;
      return true;
    case 2:
      while (1) {
        if (!s->n || shift > 63) return false;
        uint8_t b = *s->p++;
        s->n--;
        len |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) break;
      }
      if (len > s->n) return false;
      val->p = s->p;
      val->n = (size_t)len;
      s->p += len;
      s->n -= len;
      return true;
    default: return false;
  }
}

static bool span_eq(span a, const char *s, size_t n) { return a.n == n && !memcmp(a.p, s, n); }

/* String field `want` of a message. */
static span str_field(span msg, uint32_t want) {
  uint32_t f, w;
  span v, out = {NULL, 0};
  while (next_field(&msg, &f, &w, &v))
    if (f == want && w == 2) out = v;
  return out;
}

/* Does message descriptor `d` (with full name prefix `scope`) define `sym`? */
static bool msg_defines(span d, const char *scope, size_t scope_n, const char *sym) {
  span name = str_field(d, 1);
  char full[512];
  int n = snprintf(full, sizeof full, "%.*s%s%.*s", (int)scope_n, scope, scope_n ? "." : "", (int)name.n,
                   (const char *)name.p);
  if (n <= 0 || (size_t)n >= sizeof full) return false;
  if (!strcmp(full, sym)) return true;
  uint32_t f, w;
  span v;
  while (next_field(&d, &f, &w, &v)) {
    if (w != 2) continue;
    if (f == 3 && msg_defines(v, full, (size_t)n, sym)) return true;    /* nested_type */
    if (f == 4) {                                                        /* enum_type */
      span en = str_field(v, 1);
      char e[600];
      snprintf(e, sizeof e, "%s.%.*s", full, (int)en.n, (const char *)en.p);
      if (!strcmp(e, sym)) return true;
    }
  }
  return false;
}

static bool file_defines(span file, const char *sym) {
  span pkg = str_field(file, 2);
  uint32_t f, w;
  span v;
  char full[600];
  while (next_field(&file, &f, &w, &v)) {
    if (w != 2) continue;
    if (f == 4 && msg_defines(v, (const char *)pkg.p, pkg.n, sym)) return true;
    if (f == 5 || f == 6) {
      span name = str_field(v, 1);
      snprintf(full, sizeof full, "%.*s%s%.*s", (int)pkg.n, (const char *)pkg.p, pkg.n ? "." : "", (int)name.n,
               (const char *)name.p);
      if (!strcmp(full, sym)) return true;
      if (f == 6) { /* methods: Service.Method */
        uint32_t mf, mw;
        span mv, svc = v;
        size_t fl = strlen(full);
        while (next_field(&svc, &mf, &mw, &mv)) {
          if (mf != 2 || mw != 2) continue;
          span mn = str_field(mv, 1);
          if (strlen(sym) == fl + 1 + mn.n && !strncmp(sym, full, fl) && sym[fl] == '.' &&
              !memcmp(sym + fl + 1, mn.p, mn.n))
            return true;
        }
      }
    }
  }
  return false;
}

typedef struct file_list {
  span files[16];
  size_t n;
} file_list;

static bool find_file_by_name(span name, span *out) {
  span set = {qq_proto_descriptor_set, qq_proto_descriptor_set_len};
  uint32_t f, w;
  span v;
  while (next_field(&set, &f, &w, &v))
    if (f == 1 && w == 2 && span_eq(str_field(v, 1), (const char *)name.p, name.n)) {
      *out = v;
      return true;
    }
  return false;
}

/* Adds file and (depth first) its imports, each once. */
static void add_with_deps(file_list *fl, span file) {
  for (size_t i = 0; i < fl->n; i++)
    if (fl->files[i].p == file.p) return;
  if (fl->n == QQ_ARRAY_LEN(fl->files)) return;
  fl->files[fl->n++] = file;
  uint32_t f, w;
  span v, it = file, dep;
  while (next_field(&it, &f, &w, &v))
    if (f == 3 && w == 2 && find_file_by_name(v, &dep)) add_with_deps(fl, dep);
}

/* Builds the answer to one request and hands it to emit (the answer lives on this function's stack). */
static void answer(const Grpc__Reflection__V1alpha__ServerReflectionRequest *req,
                   void (*emit)(void *ctx, const ProtobufCMessage *msg), void *ctx) {
  Grpc__Reflection__V1alpha__ServerReflectionResponse resp = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ListServiceResponse list = GRPC__REFLECTION__V1ALPHA__LIST_SERVICE_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ServiceResponse svc[QQ_ARRAY_LEN(SERVICES)];
  Grpc__Reflection__V1alpha__ServiceResponse *svc_ptr[QQ_ARRAY_LEN(SERVICES)];
  Grpc__Reflection__V1alpha__FileDescriptorResponse fdr = GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT;
  Grpc__Reflection__V1alpha__ErrorResponse er = GRPC__REFLECTION__V1ALPHA__ERROR_RESPONSE__INIT;
  ProtobufCBinaryData blobs[16];
  file_list fl = {.n = 0};
  char msg[400];
  resp.valid_host = req->host ? req->host : "";
  resp.original_request = (Grpc__Reflection__V1alpha__ServerReflectionRequest *)req;

  switch (req->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
      for (size_t i = 0; i < QQ_ARRAY_LEN(SERVICES); i++) {
        grpc__reflection__v1alpha__service_response__init(&svc[i]);
        svc[i].name = (char *)SERVICES[i];
        svc_ptr[i] = &svc[i];
      }
      list.n_service = QQ_ARRAY_LEN(SERVICES);
      list.service = svc_ptr;
      resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
      resp.list_services_response = &list;
      break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL: {
      bool by_name = req->message_request_case ==
                     GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
      const char *want = by_name ? req->file_by_filename : req->file_containing_symbol;
      span set = {qq_proto_descriptor_set, qq_proto_descriptor_set_len}, v;
      uint32_t f, w;
      while (next_field(&set, &f, &w, &v)) {
        if (f != 1 || w != 2) continue;
        if (by_name ? span_eq(str_field(v, 1), want, strlen(want)) : file_defines(v, want)) {
          add_with_deps(&fl, v);
          break;
        }
      }
      if (fl.n) {
        for (size_t i = 0; i < fl.n; i++) blobs[i] = (ProtobufCBinaryData){fl.files[i].n, (uint8_t *)fl.files[i].p};
        fdr.n_file_descriptor_proto = fl.n;
        fdr.file_descriptor_proto = blobs;
        resp.message_response_case =
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        resp.file_descriptor_response = &fdr;
      } else {
        snprintf(msg, sizeof msg, "%s '%.300s' not found", by_name ? "file" : "symbol", want);
        er.error_code = GRPC_STATUS_NOT_FOUND;
        er.error_message = msg;
        resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        resp.error_response = &er;
      }
      break;
    }
    default:
      /* qquant defines no extensions. */
      er.error_code = req->message_request_case ==
                              GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE ||
                              req->message_request_case ==
                                  GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION
                          ? GRPC_STATUS_NOT_FOUND
                          : GRPC_STATUS_INVALID_ARGUMENT;
      er.error_message = er.error_code == GRPC_STATUS_NOT_FOUND ? "no extensions are defined" : "empty request";
      resp.message_response_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
      resp.error_response = &er;
      break;
  }
  emit(ctx, &resp.base);
}

/* Decodes and checks a request; NULL (err set, QQ_ERR_INVALID_ARG) when it is not a valid one. */
static Grpc__Reflection__V1alpha__ServerReflectionRequest *decode(const uint8_t *data, size_t len, qq_error *err) {
  Grpc__Reflection__V1alpha__ServerReflectionRequest *req =
      grpc__reflection__v1alpha__server_reflection_request__unpack(NULL, len, data);
  if (!req) {
    qq_error_set(err, QQ_ERR_INVALID_ARG, "the request is not a valid grpc.reflection.v1alpha.ServerReflectionRequest");
    return NULL;
  }
  /* The oneof's strings share one union member; check the one that is set. */
  const char *strs[2] = {req->host, NULL};
  switch (req->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME: strs[1] = req->file_by_filename; break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL: strs[1] = req->file_containing_symbol; break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES: strs[1] = req->list_services; break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: strs[1] = req->all_extension_numbers_of_type; break;
    default: break;
  }
  size_t bad;
  for (size_t i = 0; i < 2; i++) {
    if (strs[i] && !qq_utf8_valid(strs[i], strlen(strs[i]), &bad)) {
      grpc__reflection__v1alpha__server_reflection_request__free_unpacked(req, NULL);
      qq_error_set(err, QQ_ERR_INVALID_ARG, "invalid UTF-8 in the reflection request");
      return NULL;
    }
  }
  return req;
}

static void on_reflection_message(qq_call *c, const uint8_t *data, size_t len, bool end);

/* The next request is read once this answer is written: no answers pile up for a client that does not
 * read them. */
static void emit_to_call(void *ctx, const ProtobufCMessage *msg) {
  qq_call_send_then_recv(ctx, msg, on_reflection_message);
}

static void on_reflection_message(qq_call *c, const uint8_t *data, size_t len, bool end) {
  if (end) {
    qq_call_finish(c, GRPC_STATUS_OK, "");
    return;
  }
  qq_error err = {0};
  Grpc__Reflection__V1alpha__ServerReflectionRequest *req = decode(data, len, &err);
  if (!req) {
    qq_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, err.msg);
    return;
  }
  answer(req, emit_to_call, c);
  grpc__reflection__v1alpha__server_reflection_request__free_unpacked(req, NULL);
}

void qq_reflection_start(qq_call *c) { qq_call_recv_next(c, on_reflection_message); }

/* The fuzz target's path: the answer is serialized as for the wire, then dropped. */
static void emit_packed(void *ctx, const ProtobufCMessage *msg) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = malloc(n ? n : 1);
  if (buf) protobuf_c_message_pack(msg, buf);
  *(size_t *)ctx = buf ? n : 0;
  free(buf);
}

qq_status qq_reflection_check_request(const uint8_t *data, size_t len, qq_error *err) {
  Grpc__Reflection__V1alpha__ServerReflectionRequest *req = decode(data, len, err);
  if (!req) return QQ_ERR_INVALID_ARG;
  size_t packed = 0;
  answer(req, emit_packed, &packed);
  grpc__reflection__v1alpha__server_reflection_request__free_unpacked(req, NULL);
  return packed ? QQ_OK : qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
}
