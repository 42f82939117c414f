/* validate.c — request checks that need no model: protobuf-c accepts any bytes in `string` fields, so
 * UTF-8 is checked here, along with counts and parameter ranges. Also qq_service_check_request, the
 * decode + validate entry point that the fuzz target drives. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------ method table */

static const struct {
  const char *path;
  qq_method m;
  const char *name;
} METHODS[] = {
    {"/qquant.v1.Inference/Classify", QQ_M_CLASSIFY, "Classify"},
    {"/qquant.v1.Inference/Generate", QQ_M_GENERATE, "Generate"},
    {"/qquant.v1.Inference/GetModelInfo", QQ_M_INFO, "GetModelInfo"},
    {"/grpc.health.v1.Health/Check", QQ_M_HEALTH_CHECK, "Health.Check"},
    {"/grpc.health.v1.Health/Watch", QQ_M_HEALTH_WATCH, "Health.Watch"},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", QQ_M_REFLECTION, "ServerReflectionInfo"},
};

qq_method qq_method_from_path(const char *path, size_t len) {
  for (size_t i = 0; i < QQ_ARRAY_LEN(METHODS); i++)
    if (strlen(METHODS[i].path) == len && !memcmp(METHODS[i].path, path, len)) return METHODS[i].m;
  return QQ_M_UNKNOWN;
}

const char *qq_method_name(qq_method m) {
  for (size_t i = 0; i < QQ_ARRAY_LEN(METHODS); i++)
    if (METHODS[i].m == m) return METHODS[i].name;
  return "unknown";
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
bool qq_utf8_valid(const char *str, size_t len, size_t *bad_at) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    size_t n;
    unsigned min;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      min = 0x10000;
    } else {
      goto bad;
    }
    unsigned cp = c & (0x3Fu >> n);
    for (size_t k = 1; k <= n; k++) {
      if (i + k >= len || (s[i + k] & 0xC0) != 0x80) goto bad;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
    i += n + 1;
  }
  return true;
bad:
  if (bad_at) *bad_at = i;
  return false;
}

static qq_status check_text(const char *field, size_t idx, bool indexed, const char *s, int32_t max_bytes,
                            bool allow_empty, qq_error *err) {
  char name[64];
  if (indexed) snprintf(name, sizeof name, "%s[%zu]", field, idx);
  else snprintf(name, sizeof name, "%s", field);
  size_t len = s ? strlen(s) : 0;
  if (!allow_empty && len == 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: empty", name);
  if (len > (size_t)max_bytes)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: %zu bytes, more than the limit of %d", name, len, max_bytes);
  size_t bad;
  if (len && !qq_utf8_valid(s, len, &bad))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: invalid UTF-8 at byte %zu", name, bad);
  return QQ_OK;
}

qq_status qq_validate_classify(const Qquant__V1__ClassifyRequest *r, const qq_request_limits *lim, qq_error *err) {
  qq_status st;
  if (r->n_inputs == 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "inputs: empty (send at least one text)");
  if (r->n_inputs > (size_t)lim->max_inputs)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "inputs: %zu texts, more than the limit of %d per request",
                        r->n_inputs, lim->max_inputs);
  for (size_t i = 0; i < r->n_inputs; i++)
    if ((st = check_text("inputs", i, true, r->inputs[i], lim->max_text_bytes, false, err))) return st;
  if (r->n_candidate_labels > (size_t)lim->max_labels)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "candidate_labels: %zu labels, more than the limit of %d",
                        r->n_candidate_labels, lim->max_labels);
  for (size_t i = 0; i < r->n_candidate_labels; i++) {
    if ((st = check_text("candidate_labels", i, true, r->candidate_labels[i], lim->max_text_bytes, false, err)))
      return st;
    for (size_t k = 0; k < i; k++)
      if (!strcmp(r->candidate_labels[k], r->candidate_labels[i]))
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "candidate_labels[%zu]: duplicate of candidate_labels[%zu]", i, k);
  }
  if (r->truncation != QQUANT__V1__TRUNCATION__TRUNCATION_NONE && r->truncation != QQUANT__V1__TRUNCATION__TRUNCATION_LEFT &&
      r->truncation != QQUANT__V1__TRUNCATION__TRUNCATION_RIGHT)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "truncation: unknown value %d", (int)r->truncation);
  if (r->max_input_tokens > (uint32_t)lim->max_seq_len)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "max_input_tokens: %u is more than max-seq-len %d", r->max_input_tokens,
                        lim->max_seq_len);
  if ((st = check_text("label_prefix", 0, false, r->label_prefix, lim->max_text_bytes, true, err))) return st;
  if (r->label_prefix && r->label_prefix[0] && r->n_candidate_labels == 0)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "label_prefix: only meaningful with candidate_labels (zero-shot)");
  return QQ_OK;
}

qq_status qq_validate_generate(const Qquant__V1__GenerateRequest *r, const qq_request_limits *lim, qq_error *err) {
  qq_status st;
  bool has_text = r->prompt && r->prompt[0];
  if (has_text == (r->n_prompt_token_ids > 0))
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        has_text ? "prompt and prompt_token_ids are both set; send exactly one"
                                 : "prompt: empty (send prompt text or prompt_token_ids)");
  if (has_text && (st = check_text("prompt", 0, false, r->prompt, lim->max_text_bytes, false, err))) return st;
  if (r->n_prompt_token_ids > (size_t)lim->max_seq_len)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "too many tokens: prompt_token_ids has %zu ids, max-seq-len is %d",
                        r->n_prompt_token_ids, lim->max_seq_len);
  for (size_t i = 0; i < r->n_prompt_token_ids; i++)
    if (r->prompt_token_ids[i] < 0 || r->prompt_token_ids[i] >= lim->vocab_size)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "prompt_token_ids[%zu]: %d is outside the vocabulary [0, %d)", i,
                          r->prompt_token_ids[i], lim->vocab_size);
  if (r->max_new_tokens > (uint32_t)lim->max_seq_len)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "max_new_tokens: %u is more than max-seq-len %d", r->max_new_tokens,
                        lim->max_seq_len);
  if (!isfinite(r->temperature) || r->temperature < 0 || r->temperature > 100)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "temperature: %g is outside [0, 100]", (double)r->temperature);
  if (!isfinite(r->top_p) || r->top_p < 0 || r->top_p > 1)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "top_p: %g is outside [0, 1] (0 means off)", (double)r->top_p);
  if (r->top_k > (uint32_t)lim->vocab_size)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "top_k: %u is more than the vocabulary size %d", r->top_k, lim->vocab_size);
  if (r->n_stop > (size_t)lim->max_stops)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "stop: %zu strings, more than the limit of %d", r->n_stop, lim->max_stops);
  for (size_t i = 0; i < r->n_stop; i++)
    if ((st = check_text("stop", i, true, r->stop[i], 256, false, err))) return st;
  return QQ_OK;
}

qq_status qq_validate_health(const Grpc__Health__V1__HealthCheckRequest *r, qq_error *err) {
  return check_text("service", 0, false, r->service, 1024, true, err);
}

qq_status qq_service_check_request(const char *method, const uint8_t *data, size_t len, const qq_request_limits *lim,
                                   qq_error *err) {
  qq_method m = qq_method_from_path(method, strlen(method));
  qq_status st = QQ_OK;
  switch (m) {
    case QQ_M_CLASSIFY: {
      Qquant__V1__ClassifyRequest *r = qquant__v1__classify_request__unpack(NULL, len, data);
      if (!r) return qq_error_set(err, QQ_ERR_INVALID_ARG, "not a valid qquant.v1.ClassifyRequest");
      st = qq_validate_classify(r, lim, err);
      qquant__v1__classify_request__free_unpacked(r, NULL);
      return st;
    }
    case QQ_M_GENERATE: {
      Qquant__V1__GenerateRequest *r = qquant__v1__generate_request__unpack(NULL, len, data);
      if (!r) return qq_error_set(err, QQ_ERR_INVALID_ARG, "not a valid qquant.v1.GenerateRequest");
      st = qq_validate_generate(r, lim, err);
      qquant__v1__generate_request__free_unpacked(r, NULL);
      return st;
    }
    case QQ_M_INFO: {
      Qquant__V1__GetModelInfoRequest *r = qquant__v1__get_model_info_request__unpack(NULL, len, data);
      if (!r) return qq_error_set(err, QQ_ERR_INVALID_ARG, "not a valid qquant.v1.GetModelInfoRequest");
      qquant__v1__get_model_info_request__free_unpacked(r, NULL);
      return QQ_OK;
    }
    case QQ_M_HEALTH_CHECK:
    case QQ_M_HEALTH_WATCH: {
      Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, data);
      if (!r) return qq_error_set(err, QQ_ERR_INVALID_ARG, "not a valid grpc.health.v1.HealthCheckRequest");
      st = qq_validate_health(r, err);
      grpc__health__v1__health_check_request__free_unpacked(r, NULL);
      return st;
    }
    case QQ_M_REFLECTION: return qq_reflection_check_request(data, len, err);
    default: return qq_error_set(err, QQ_ERR_NOT_FOUND, "unknown method '%s'", method);
  }
}
