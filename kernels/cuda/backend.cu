/* backend.cu — the CUDA backend's op table (qq_cuda_vtable): device setup, memory, the metadata
 * ring, weights (dense, weight-only integer, W8A8) and the dispatch of each op to its kernel family.
 * kernels/backend.c has already checked arguments common to every backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
extern "C" {
#include "cpu_internal.h" /* qq_ref_dequantize_qint: fp32 mode dequantizes quantized weights at load */
}

/* ---- the one error path ---- */

extern "C" qq_status qq_cuda_fail(qq_error *err, cudaError_t e, const char *stmt, const char *file, int line) {
  const char *base = strrchr(file, '/');
  return qq_error_set(err, e == cudaErrorMemoryAllocation ? QQ_ERR_NOMEM : QQ_ERR_CUDA, "cuda: %s failed: %s (%s:%d)",
                      stmt, cudaGetErrorString(e), base ? base + 1 : file, line);
}

extern "C" qq_status qq_cublas_fail(qq_error *err, cublasStatus_t s, const char *stmt, const char *file, int line) {
  const char *base = strrchr(file, '/');
  return qq_error_set(err, s == CUBLAS_STATUS_ALLOC_FAILED ? QQ_ERR_NOMEM : QQ_ERR_CUDA,
                      "cublasLt: %s failed: status %d (%s:%d)", stmt, (int)s, base ? base + 1 : file, line);
}

extern "C" int qq_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError(); /* no driver / no device: clear the sticky error */
    return 0;
  }
  return n;
}

/* ---- context resources ---- */

extern "C" qq_status qq_cuda_ws_reserve(qq_cuda_ctx *c, size_t bytes, qq_error *err) {
  if (bytes <= c->ws_bytes) return QQ_OK;
  if (c->mode == QQ_CUDA_CAPTURE || c->mode == QQ_CUDA_REPLAY)
    return qq_error_set(err, QQ_ERR_INTERNAL, "cuda: scratch would grow to %zu bytes inside a captured step", bytes);
  size_t want = c->ws_bytes ? c->ws_bytes : ((size_t)16 << 20);
  while (want < bytes) want *= 2;
  QQ_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
  qq_cuda_graphs_invalidate(c);
  cudaFree(c->ws);
  c->ws = NULL;
  c->ws_bytes = 0;
  QQ_CUDA_TRY(err, cudaMalloc(&c->ws, want));
  c->ws_bytes = want;
  return QQ_OK;
}

extern "C" qq_status qq_cuda_meta_push(qq_cuda_ctx *c, const void *host, size_t n, const void **dev, qq_error *err) {
  const size_t need = (n + 15) & ~(size_t)15;
  if (need > c->meta_bytes)
    return qq_error_set(err, QQ_ERR_RANGE, "cuda: %zu bytes of metadata in one op (ring holds %zu)", n, c->meta_bytes);
  if (c->meta_off + need > c->meta_bytes) {
    if (c->mode == QQ_CUDA_CAPTURE || c->mode == QQ_CUDA_REPLAY)
      return qq_error_set(err, QQ_ERR_RANGE, "cuda: a replayable step stages more than %zu bytes of metadata",
                          c->meta_bytes);
    /* Wrap: every queued copy from the ring must have finished before its slots are reused. */
    QQ_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
    c->meta_off = 0;
  }
  uint8_t *h = c->meta_host + c->meta_off;
  uint8_t *d = c->meta_dev + c->meta_off;
  if (n) {
    memcpy(h, host, n);
    /* Replaying a graph: its captured copy node reads this pinned slot when the graph runs. */
    if (c->mode != QQ_CUDA_REPLAY) QQ_CUDA_TRY(err, cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, c->stream));
  }
  c->meta_off += need;
  *dev = d;
  return QQ_OK;
}

/* The CUDA runtime's current device is per thread, and the service's engine thread is not the thread
 * that loaded the model: entry points that may be a thread's first call select the device. */
static inline qq_status bind(qq_cuda_ctx *c, qq_error *err) {
  int cur = -1;
  if (cudaGetDevice(&cur) == cudaSuccess && cur == c->device) return QQ_OK;
  QQ_CUDA_TRY(err, cudaSetDevice(c->device));
  return QQ_OK;
}

/* ---- captured steps ---- */

struct qq_cuda_graph {
  int64_t key;
  bool warmed;            /* one eager step ran with this key */
  cudaGraphExec_t exec;   /* captured (NULL until the second step) */
};

static void graphs_free(qq_cuda_ctx *c) {
  for (int32_t i = 0; i < c->n_graphs; i++)
    if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
  free(c->graphs);
  c->graphs = NULL;
  c->n_graphs = c->cap_graphs = 0;
}

static struct qq_cuda_graph *graph_find(qq_cuda_ctx *c, int64_t key, bool create) {
  for (int32_t i = 0; i < c->n_graphs; i++)
    if (c->graphs[i].key == key) return &c->graphs[i];
  if (!create) return NULL;
  if (c->n_graphs == c->cap_graphs) {
    const int32_t cap = c->cap_graphs ? c->cap_graphs * 2 : 16;
    struct qq_cuda_graph *g = (struct qq_cuda_graph *)realloc(c->graphs, (size_t)cap * sizeof *g);
    if (!g) return NULL;
    c->graphs = g;
    c->cap_graphs = cap;
  }
  struct qq_cuda_graph *g = &c->graphs[c->n_graphs++];
  memset(g, 0, sizeof *g);
  g->key = key;
  return g;
}

/* A captured step that fails midway must not leave the stream capturing. */
static void abort_capture(qq_cuda_ctx *c) {
  if (c->mode != QQ_CUDA_CAPTURE) return;
  cudaGraph_t graph = NULL;
  cudaStreamEndCapture(c->stream, &graph);
  if (graph) cudaGraphDestroy(graph);
  (void)cudaGetLastError();
  c->mode = QQ_CUDA_EAGER;
}

static qq_status cuda_step_begin(qq_backend *be, const qq_step_desc *d, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (bind(c, err) != QQ_OK) return QQ_ERR_CUDA;
  abort_capture(c); /* a previous captured step that failed midway (its caller never ended it) */
  c->step_epoch++;
  c->in_step = true;
  c->mode = QQ_CUDA_EAGER;
  memset(&c->step, 0, sizeof c->step);
  if (!d || !d->graph_key || !c->graphs_enabled) return QQ_OK;
  c->step = *d;
  struct qq_cuda_graph *g = graph_find(c, d->graph_key, true);
  if (!g) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  if (!g->warmed) {
    c->mode = QQ_CUDA_WARMUP;
  } else {
    /* The ring restarts at 0 so that capture and every replay stage the same offsets; nothing queued
     * may still read it. */
    QQ_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
    c->meta_off = 0;
    if (g->exec) {
      c->mode = QQ_CUDA_REPLAY;
    } else {
      c->mode = QQ_CUDA_CAPTURE;
      QQ_CUDA_TRY(err, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    }
  }
  return QQ_OK;
}

static qq_status cuda_step_end(qq_backend *be, bool commit, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (!commit) {
    abort_capture(c); /* a partial capture must never become a graph */
    c->mode = QQ_CUDA_EAGER;
    c->in_step = false;
    return QQ_OK;
  }
  const int mode = c->mode;
  c->mode = QQ_CUDA_EAGER;
  c->in_step = false;
  if (mode == QQ_CUDA_EAGER) return QQ_OK;
  /* A warm-up that grew a workspace dropped every graph, its own entry too: make it again. */
  struct qq_cuda_graph *g = graph_find(c, c->step.graph_key, mode == QQ_CUDA_WARMUP);
  if (!g) return qq_error_set(err, mode == QQ_CUDA_WARMUP ? QQ_ERR_NOMEM : QQ_ERR_INTERNAL,
                              "cuda: step_end for an unknown graph");
  if (mode == QQ_CUDA_WARMUP) {
    g->warmed = true;
    return QQ_OK;
  }
  if (mode == QQ_CUDA_CAPTURE) {
    cudaGraph_t graph = NULL;
    QQ_CUDA_TRY(err, cudaStreamEndCapture(c->stream, &graph));
    cudaError_t e = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
      g->exec = NULL;
      return qq_cuda_fail(err, e, "cudaGraphInstantiate", __FILE__, __LINE__);
    }
  }
  QQ_CUDA_TRY(err, cudaGraphLaunch(g->exec, c->stream));
  return QQ_OK;
}

extern "C" void qq_cuda_graphs_invalidate(qq_cuda_ctx *c) {
  if (!c->n_graphs) return;
  cudaStreamSynchronize(c->stream);
  graphs_free(c);
}

static void cuda_graphs_clear(qq_backend *be) { qq_cuda_graphs_invalidate(qq_cuda_ctx_of(be)); }

static bool cuda_has_graphs(const qq_backend *be) { return ((const qq_cuda_ctx *)be->impl)->graphs_enabled; }

static void ctx_free(qq_cuda_ctx *c) {
  if (!c) return;
  if (c->stream) cudaStreamSynchronize(c->stream);
  graphs_free(c);
  free(c->attn_host);
  free(c->attn_blocks_host);
  qq_cuda_plans_free(c);
  if (c->lt) cublasLtDestroy(c->lt);
  cudaFree(c->lt_ws);
  cudaFree(c->ws);
  cudaFree(c->counters);
  cudaFreeHost(c->meta_host);
  cudaFree(c->meta_dev);
  cudaFree(c->q8);
  cudaFree(c->q8_scales);
  if (c->stream) cudaStreamDestroy(c->stream);
  free(c);
}

static qq_status ctx_init(qq_cuda_ctx *c, qq_error *err) {
  const char *dev_env = getenv("QQ_CUDA_DEVICE");
  c->device = dev_env && *dev_env ? atoi(dev_env) : 0;
  if (c->device < 0 || c->device >= qq_cuda_device_count())
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "cuda: QQ_CUDA_DEVICE=%s names no visible device (%d visible)",
                        dev_env ? dev_env : "", qq_cuda_device_count());
  QQ_CUDA_TRY(err, cudaSetDevice(c->device));
  QQ_CUDA_TRY(err, cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, c->device));
  QQ_CUDA_TRY(err, cudaDeviceGetAttribute(&c->cc_major, cudaDevAttrComputeCapabilityMajor, c->device));
  QQ_CUDA_TRY(err, cudaDeviceGetAttribute(&c->cc_minor, cudaDevAttrComputeCapabilityMinor, c->device));
  int smem = 0;
  QQ_CUDA_TRY(err, cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device));
  c->smem_optin = (size_t)smem;
  if (c->cc_major < 8)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "cuda: device %d has compute capability %d.%d; qquant needs 8.0 or newer",
                        c->device, c->cc_major, c->cc_minor);
  QQ_CUDA_TRY(err, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  QQ_CUBLAS_TRY(err, cublasLtCreate(&c->lt));
  QQ_CUDA_TRY(err, cudaMalloc(&c->lt_ws, QQ_CUDA_LT_WS_BYTES));
  QQ_CUDA_TRY(err, cudaMalloc((void **)&c->counters, QQ_CUDA_COUNTERS * sizeof(int32_t)));
  QQ_CUDA_TRY(err, cudaMemset(c->counters, 0, QQ_CUDA_COUNTERS * sizeof(int32_t)));
  c->n_counters = QQ_CUDA_COUNTERS;
  QQ_CUDA_TRY(err, cudaHostAlloc((void **)&c->meta_host, QQ_CUDA_META_BYTES, cudaHostAllocDefault));
  QQ_CUDA_TRY(err, cudaMalloc((void **)&c->meta_dev, QQ_CUDA_META_BYTES));
  c->meta_bytes = QQ_CUDA_META_BYTES;
  const char *g = getenv("QQ_CUDA_GRAPHS");
  c->graphs_enabled = !(g && !strcmp(g, "0"));
  return qq_cuda_ws_reserve(c, (size_t)16 << 20, err);
}

static qq_status cuda_init(qq_backend *be, const qq_backend_options *opt, qq_error *err) {
  qq_cuda_ctx *c = (qq_cuda_ctx *)calloc(1, sizeof *c);
  if (!c) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  c->act = opt->act == QQ_ACT_AUTO ? QQ_ACT_BF16 : opt->act;
  qq_status st = ctx_init(c, err);
  if (st != QQ_OK) {
    ctx_free(c);
    return st;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, c->device) != cudaSuccess) snprintf(prop.name, sizeof prop.name, "device %d", c->device);
  be->impl = c;
  be->act = c->act;
  be->act_bytes = qq_cuda_act_size(c->act);
  snprintf(be->description, sizeof be->description, "cuda (%s, sm_%d%d, %s activations)", prop.name, c->cc_major,
           c->cc_minor, qq_act_dtype_name(c->act));
  return QQ_OK;
}

static void cuda_destroy(qq_backend *be) { ctx_free(qq_cuda_ctx_of(be)); }

/* Any op that writes `p` invalidates the fused-RMSNorm int8 copy of it. */
static inline void touch(qq_cuda_ctx *c, const void *p) {
  if (c->q8_src == p) c->q8_src = NULL;
}

static qq_status cuda_alloc_bytes(qq_backend *be, size_t bytes, void **out, qq_error *err) {
  *out = NULL;
  if (bind(qq_cuda_ctx_of(be), err) != QQ_OK) return QQ_ERR_CUDA;
  QQ_CUDA_TRY(err, cudaMalloc(out, bytes ? bytes : 16));
  return QQ_OK;
}

static void cuda_release(qq_backend *be, void *p) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  cudaStreamSynchronize(c->stream); /* work queued on p must finish before it can be reused */
  touch(c, p);
  cudaFree(p);
}

static qq_status not_in_graph(qq_cuda_ctx *c, const char *what, qq_error *err) {
  if (c->mode == QQ_CUDA_CAPTURE || c->mode == QQ_CUDA_REPLAY)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "cuda: %s inside a replayable step (end the step first)", what);
  return QQ_OK;
}

static qq_status cuda_upload(qq_backend *be, const float *host, size_t n, void *dst, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (!n) return QQ_OK;
  if (not_in_graph(c, "upload", err) != QQ_OK) return err ? err->status : QQ_ERR_INVALID_ARG;
  if (bind(c, err) != QQ_OK) return QQ_ERR_CUDA;
  touch(c, dst);
  if (c->act == QQ_ACT_F32) {
    QQ_CUDA_TRY(err, cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, c->stream));
    return QQ_OK;
  }
  qq_status st = qq_cuda_ws_reserve(c, n * sizeof(float), err);
  if (st != QQ_OK) return st;
  QQ_CUDA_TRY(err, cudaMemcpyAsync(c->ws, host, n * sizeof(float), cudaMemcpyHostToDevice, c->stream));
  return qq_cuda_f32_to_act(c, (const float *)c->ws, dst, n, err);
}

static qq_status cuda_download(qq_backend *be, const void *src, size_t n, float *host, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (!n) return QQ_OK;
  if (not_in_graph(c, "download", err) != QQ_OK) return err ? err->status : QQ_ERR_INVALID_ARG;
  if (bind(c, err) != QQ_OK) return QQ_ERR_CUDA;
  const void *from = src;
  if (c->act != QQ_ACT_F32) {
    qq_status st = qq_cuda_ws_reserve(c, n * sizeof(float), err);
    if (st != QQ_OK) return st;
    st = qq_cuda_act_to_f32(c, src, (float *)c->ws, n, err);
    if (st != QQ_OK) return st;
    from = c->ws;
  }
  QQ_CUDA_TRY(err, cudaMemcpyAsync(host, from, n * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
  QQ_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
  return QQ_OK;
}

static qq_status cuda_sync(qq_backend *be, qq_error *err) {
  QQ_CUDA_TRY(err, cudaStreamSynchronize(qq_cuda_ctx_of(be)->stream));
  return QQ_OK;
}

static qq_status cuda_mem_info(qq_backend *be, size_t *free_bytes, size_t *total_bytes, qq_error *err) {
  QQ_CUDA_TRY(err, cudaMemGetInfo(free_bytes, total_bytes));
  return QQ_OK;
}

/* ---- weights ---- */

typedef struct cuda_linear {
  void *w;              /* dense: [n][k] in the activation dtype; W8A8: int8 [n][k] */
  float *bias;          /* device fp32 [n] or NULL */
  float *scales;        /* W8A8: device fp32 [n] */
  float act_scale;      /* W8A8 */
  qq_cuda_wq *wq;       /* weight-only integer (bf16/fp16 activations) */
  bool dense;           /* w is a dense activation-dtype matrix (also QINT in fp32 mode) */
} cuda_linear;

static size_t dense_src_bytes(qq_weight_format f) { return f == QQ_WFMT_F32 ? 4 : 2; }
static qq_weight_format act_wfmt(qq_act_dtype a) {
  return a == QQ_ACT_F32 ? QQ_WFMT_F32 : a == QQ_ACT_BF16 ? QQ_WFMT_BF16 : QQ_WFMT_F16;
}

/* Uploads host weights of a dense format into a new [n][k] activation-dtype matrix. */
static qq_status upload_dense(qq_cuda_ctx *c, qq_weight_format fmt, const void *host, size_t numel, void **out,
                              qq_error *err) {
  const size_t out_bytes = numel * qq_cuda_act_size(c->act);
  QQ_CUDA_TRY(err, cudaMalloc(out, out_bytes));
  if (fmt == act_wfmt(c->act)) {
    QQ_CUDA_TRY(err, cudaMemcpy(*out, host, out_bytes, cudaMemcpyHostToDevice));
    return QQ_OK;
  }
  /* Convert on the device, in chunks through the scratch so a 1 GB embedding needs no 2nd copy. */
  const size_t eb = dense_src_bytes(fmt), chunk = ((size_t)64 << 20) / eb;
  qq_status st = qq_cuda_ws_reserve(c, chunk * eb, err);
  if (st != QQ_OK) return st;
  for (size_t off = 0; off < numel; off += chunk) {
    const size_t cnt = numel - off < chunk ? numel - off : chunk;
    QQ_CUDA_TRY(err, cudaMemcpyAsync(c->ws, (const uint8_t *)host + off * eb, cnt * eb, cudaMemcpyHostToDevice, c->stream));
    st = qq_cuda_convert(c, fmt, c->ws, c->act, (uint8_t *)*out + off * qq_cuda_act_size(c->act), cnt, err);
    if (st != QQ_OK) return st;
    QQ_CUDA_TRY(err, cudaStreamSynchronize(c->stream)); /* the next chunk overwrites the scratch */
  }
  return QQ_OK;
}

static qq_status upload_f32_vec(const float *host, size_t n, float **out, qq_error *err) {
  QQ_CUDA_TRY(err, cudaMalloc((void **)out, n * sizeof(float)));
  QQ_CUDA_TRY(err, cudaMemcpy(*out, host, n * sizeof(float), cudaMemcpyHostToDevice));
  return QQ_OK;
}

static void cuda_linear_destroy(qq_backend *be, qq_linear *lin) {
  cuda_linear *cl = (cuda_linear *)lin->impl;
  if (!cl) return;
  cudaStreamSynchronize(qq_cuda_ctx_of(be)->stream);
  cudaFree(cl->w);
  cudaFree(cl->bias);
  cudaFree(cl->scales);
  qq_cuda_wq_free(cl->wq);
  free(cl);
  lin->impl = NULL;
}

static qq_status linear_create_impl(qq_cuda_ctx *c, const qq_linear_desc *d, cuda_linear *cl, size_t *bytes,
                                    qq_error *err) {
  const size_t nk = (size_t)d->n * d->k;
  qq_status st = QQ_OK;
  if (d->bias) {
    if ((st = upload_f32_vec(d->bias, (size_t)d->n, &cl->bias, err)) != QQ_OK) return st;
    *bytes += (size_t)d->n * sizeof(float);
  }
  switch (d->format) {
    case QQ_WFMT_F32:
    case QQ_WFMT_BF16:
    case QQ_WFMT_F16:
      cl->dense = true;
      *bytes += nk * qq_cuda_act_size(c->act);
      return upload_dense(c, d->format, d->w, nk, &cl->w, err);
    case QQ_WFMT_QINT: {
      if (c->act != QQ_ACT_F32) {
        size_t wb = 0;
        st = qq_cuda_wq_create(c, d, &cl->wq, &wb, err);
        *bytes += wb;
        return st;
      }
      /* fp32 mode (parity with the CPU backend): the reference dequantization, then fp32 GEMM. */
      float *wf = (float *)malloc(nk * sizeof(float));
      if (!wf) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory dequantizing a [%d, %d] weight", d->n, d->k);
      qq_ref_dequantize_qint(d, wf);
      cl->dense = true;
      *bytes += nk * sizeof(float);
      st = upload_dense(c, QQ_WFMT_F32, wf, nk, &cl->w, err);
      free(wf);
      return st;
    }
    case QQ_WFMT_W8A8:
      QQ_CUDA_TRY(err, cudaMalloc(&cl->w, nk));
      QQ_CUDA_TRY(err, cudaMemcpy(cl->w, d->w, nk, cudaMemcpyHostToDevice));
      if ((st = upload_f32_vec(d->scales, (size_t)d->n, &cl->scales, err)) != QQ_OK) return st;
      cl->act_scale = d->act_scale;
      if (d->act_scale == 0.0f) c->fuse_act_quant = true;
      *bytes += nk + (size_t)d->n * sizeof(float);
      return QQ_OK;
  }
  return qq_error_set(err, QQ_ERR_INVALID_ARG, "cuda: unknown weight format %d", (int)d->format);
}

static qq_status cuda_linear_create(qq_backend *be, const qq_linear_desc *d, qq_linear *lin, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (bind(c, err) != QQ_OK) return QQ_ERR_CUDA;
  cuda_linear *cl = (cuda_linear *)calloc(1, sizeof *cl);
  if (!cl) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  lin->impl = cl;
  size_t bytes = 0;
  qq_status st = linear_create_impl(c, d, cl, &bytes, err);
  if (st != QQ_OK) {
    cuda_linear_destroy(be, lin);
    return st;
  }
  lin->bytes = bytes;
  return QQ_OK;
}

static qq_status cuda_linear_to_f32(const qq_linear *lin, float *w, float *bias, qq_error *err) {
  const cuda_linear *cl = (const cuda_linear *)lin->impl;
  qq_cuda_ctx *c = qq_cuda_ctx_of(lin->be);
  const size_t nk = (size_t)lin->n * lin->k;
  if (bias) {
    if (cl->bias)
      QQ_CUDA_TRY(err, cudaMemcpy(bias, cl->bias, (size_t)lin->n * sizeof(float), cudaMemcpyDeviceToHost));
    else
      memset(bias, 0, (size_t)lin->n * sizeof(float));
  }
  if (!w) return QQ_OK;
  if (cl->wq) return qq_cuda_wq_to_f32(cl->wq, w, err);
  if (cl->dense) {
    float *tmp = NULL;
    QQ_CUDA_TRY(err, cudaMalloc((void **)&tmp, nk * sizeof(float)));
    qq_status st = qq_cuda_act_to_f32(c, cl->w, tmp, nk, err);
    if (st == QQ_OK) {
      cudaError_t e = cudaMemcpyAsync(w, tmp, nk * sizeof(float), cudaMemcpyDeviceToHost, c->stream);
      if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
      if (e != cudaSuccess) st = qq_cuda_fail(err, e, "download weight", __FILE__, __LINE__);
    }
    cudaFree(tmp);
    return st;
  }
  /* W8A8: codes · per-channel scale, as the CPU backend reports it. */
  int8_t *codes = (int8_t *)malloc(nk);
  float *sc = (float *)malloc((size_t)lin->n * sizeof(float));
  qq_status st = QQ_OK;
  if (!codes || !sc) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  } else if (cudaMemcpy(codes, cl->w, nk, cudaMemcpyDeviceToHost) != cudaSuccess ||
             cudaMemcpy(sc, cl->scales, (size_t)lin->n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess) {
    st = qq_error_set(err, QQ_ERR_CUDA, "cuda: downloading a W8A8 weight failed");
  } else {
    for (size_t i = 0; i < nk; i++) w[i] = (float)codes[i] * sc[i / lin->k];
  }
  free(codes);
  free(sc);
  return st;
}

/* ---- ops ---- */

static qq_status cuda_matmul(qq_backend *be, const qq_linear *lin, const void *x, int32_t m, void *y, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  const cuda_linear *cl = (const cuda_linear *)lin->impl;
  if (c->mode == QQ_CUDA_REPLAY) return QQ_OK;
  touch(c, y);
  qq_status st;
  if (cl->dense) return qq_cuda_gemm_dense(c, cl->w, cl->bias, m, lin->n, lin->k, x, y, err);
  if (cl->wq) {
    if ((st = qq_cuda_ws_reserve(c, qq_cuda_wq_ws_bytes(cl->wq, m), err)) != QQ_OK) return st;
    return qq_cuda_wq_matmul(c, cl->wq, x, m, cl->bias, y, err);
  }
  if ((st = qq_cuda_ws_reserve(c, qq_cuda_w8a8_ws_bytes(m, lin->n, lin->k), err)) != QQ_OK) return st;
  return qq_cuda_w8a8_matmul(c, (const int8_t *)cl->w, cl->scales, cl->act_scale, cl->bias, lin->n, lin->k, x, m, y,
                             err);
}

static qq_status cuda_embed(qq_backend *be, const qq_linear *t, const int32_t *tok, int32_t n, void *out,
                            qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  const cuda_linear *cl = (const cuda_linear *)t->impl;
  if (!cl->dense)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "cuda: embedding tables must be dense (this one is %s)",
                        t->format == QQ_WFMT_W8A8 ? "W8A8" : "quantized");
  touch(c, out);
  const void *dev = NULL;
  qq_status st = qq_cuda_meta_push(c, tok, (size_t)n * sizeof(int32_t), &dev, err);
  if (st != QQ_OK || c->mode == QQ_CUDA_REPLAY) return st;
  return qq_cuda_gather_rows(c, c->act, cl->w, (const int32_t *)dev, n, t->k, out, err);
}

static qq_status cuda_rmsnorm(qq_backend *be, const void *x, const void *w, int32_t rows, int32_t dim, float eps,
                              void *out, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (c->mode == QQ_CUDA_REPLAY) return QQ_OK;
  touch(c, out);
  return qq_cuda_rmsnorm(c, x, w, rows, dim, eps, out, err);
}

static qq_status cuda_add(qq_backend *be, void *acc, const void *x, size_t n, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (c->mode == QQ_CUDA_REPLAY) return QQ_OK;
  touch(c, acc);
  return qq_cuda_add(c, acc, x, n, err);
}

static qq_status cuda_silu_mul(qq_backend *be, const void *gate, const void *up, size_t n, void *out, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (c->mode == QQ_CUDA_REPLAY) return QQ_OK;
  touch(c, out);
  return qq_cuda_silu_mul(c, gate, up, n, out, err);
}

static qq_status cuda_rope(qq_backend *be, void *x, const int32_t *pos, int32_t t, int32_t heads, int32_t hd,
                           float theta, qq_rope_freq freq, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  touch(c, x);
  /* Every layer ropes q and k with the same positions: within a step they are uploaded once. */
  const void *dev = c->pos_dev;
  if (!(c->in_step && c->pos_epoch == c->step_epoch && c->pos_key == (const void *)pos && c->pos_key_n == t)) {
    qq_status st = qq_cuda_meta_push(c, pos, (size_t)t * sizeof(int32_t), &dev, err);
    if (st != QQ_OK) return st;
    c->pos_dev = dev;
    c->pos_epoch = c->in_step ? c->step_epoch : 0;
    c->pos_key = pos;
    c->pos_key_n = t;
  }
  if (c->mode == QQ_CUDA_REPLAY) return QQ_OK;
  return qq_cuda_rope(c, x, (const int32_t *)dev, t, heads, hd, theta, freq, err);
}

static qq_status cuda_gather_rows(qq_backend *be, const void *x, const int32_t *rows, int32_t n_rows, int32_t width,
                                  void *out, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  touch(c, out);
  const void *dev = NULL;
  qq_status st = qq_cuda_meta_push(c, rows, (size_t)n_rows * sizeof(int32_t), &dev, err);
  if (st != QQ_OK || c->mode == QQ_CUDA_REPLAY) return st;
  return qq_cuda_gather_rows(c, c->act, x, (const int32_t *)dev, n_rows, width, out, err);
}

/* Builds and uploads the attention metadata of a batch: per-sequence records and the flattened block
 * tables. Within a step every layer passes the same host array (kernels.h), so it is uploaded once per
 * step. In a replayable step each table has exactly graph_blocks_per_seq entries and max_len is the
 * step's bound, so the upload's size and the kernels' launch geometry are the same at every replay. */
static qq_status attn_metadata(qq_cuda_ctx *c, const qq_attn_params *p, const qq_attn_seq *seqs, int32_t n_seqs,
                               qq_error *err) {
  /* Outside a step the array may change between calls: reuse only within one step. */
  if (c->in_step && c->attn_epoch == c->step_epoch && c->attn_key == (const void *)seqs && c->attn_key_n == n_seqs)
    return QQ_OK;
  const bool fixed = c->step.graph_key != 0 && c->mode != QQ_CUDA_EAGER;
  int64_t n_blocks = 0;
  for (int32_t s = 0; s < n_seqs; s++) {
    const int32_t len = seqs[s].n_past + seqs[s].n_new;
    if (fixed && len > c->step.graph_max_len)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "attention: sequence of %d tokens in a step bounded by %d", len,
                          c->step.graph_max_len);
    n_blocks += fixed ? c->step.graph_blocks_per_seq : (len + p->block_tokens - 1) / p->block_tokens;
  }
  if ((size_t)n_seqs > c->attn_host_cap) {
    void *q = realloc(c->attn_host, (size_t)n_seqs * sizeof(qq_cuda_attn_seq));
    if (!q) return qq_error_set(err, QQ_ERR_NOMEM, "attention: out of memory");
    c->attn_host = (qq_cuda_attn_seq *)q;
    c->attn_host_cap = (size_t)n_seqs;
  }
  if ((size_t)n_blocks > c->attn_blocks_cap) {
    void *q = realloc(c->attn_blocks_host, (size_t)n_blocks * sizeof(int32_t));
    if (!q) return qq_error_set(err, QQ_ERR_NOMEM, "attention: out of memory");
    c->attn_blocks_host = (int32_t *)q;
    c->attn_blocks_cap = (size_t)n_blocks;
  }
  qq_cuda_attn_batch b = {};
  b.n_seqs = n_seqs;
  int32_t off = 0;
  for (int32_t s = 0; s < n_seqs; s++) {
    const int32_t len = seqs[s].n_past + seqs[s].n_new;
    const int32_t nb = fixed ? c->step.graph_blocks_per_seq : (len + p->block_tokens - 1) / p->block_tokens;
    qq_cuda_attn_seq *h = &c->attn_host[s];
    h->row = seqs[s].row;
    h->n_new = seqs[s].n_new;
    h->n_past = seqs[s].n_past;
    h->block_off = off;
    memcpy(c->attn_blocks_host + off, seqs[s].blocks, (size_t)nb * sizeof(int32_t));
    off += nb;
    b.total_rows += seqs[s].n_new;
    b.max_new = QQ_MAX(b.max_new, seqs[s].n_new);
    b.max_len = QQ_MAX(b.max_len, len);
  }
  if (fixed) b.max_len = c->step.graph_max_len; /* launch geometry from the bound, not this step's lengths */
  const void *dseqs = NULL, *dblocks = NULL;
  qq_status st = qq_cuda_meta_push(c, c->attn_host, (size_t)n_seqs * sizeof(qq_cuda_attn_seq), &dseqs, err);
  if (st == QQ_OK) st = qq_cuda_meta_push(c, c->attn_blocks_host, (size_t)off * sizeof(int32_t), &dblocks, err);
  if (st != QQ_OK) return st;
  b.seqs_dev = (const qq_cuda_attn_seq *)dseqs;
  b.blocks_dev = (const int32_t *)dblocks;
  b.seqs_host = c->attn_host;
  c->attn_batch = b;
  c->attn_epoch = c->in_step ? c->step_epoch : 0;
  c->attn_key = seqs;
  c->attn_key_n = n_seqs;
  return QQ_OK;
}

static qq_status cuda_attention(qq_backend *be, const qq_attn_params *p, const qq_attn_seq *seqs, int32_t n_seqs,
                                const void *q, const void *k, const void *v, void *kc, void *vc, void *out,
                                qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (n_seqs <= 0) return QQ_OK;
  qq_status st = attn_metadata(c, p, seqs, n_seqs, err);
  if (st != QQ_OK || c->mode == QQ_CUDA_REPLAY) return st;
  touch(c, out);
  if ((st = qq_cuda_ws_reserve(c, qq_cuda_attention_ws_bytes(c, p, &c->attn_batch), err)) != QQ_OK) return st;
  return qq_cuda_attention(c, p, &c->attn_batch, q, k, v, kc, vc, out, err);
}

static qq_status cuda_kv_copy(qq_backend *be, const qq_attn_params *p, void *kc, void *vc, const int32_t *src,
                              const int32_t *dst, int32_t n_tokens, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  if (n_tokens <= 0) return QQ_OK;
  const size_t nb = (size_t)(n_tokens + p->block_tokens - 1) / p->block_tokens;
  const void *ds = NULL, *dd = NULL;
  qq_status st = qq_cuda_meta_push(c, src, nb * sizeof(int32_t), &ds, err);
  if (st == QQ_OK) st = qq_cuda_meta_push(c, dst, nb * sizeof(int32_t), &dd, err);
  if (st != QQ_OK) return st;
  return qq_cuda_kv_copy(c, p, kc, vc, (const int32_t *)ds, (const int32_t *)dd, n_tokens, err);
}

extern "C" const qq_backend_vtable qq_cuda_vtable = {
    /*name*/ "cuda",
    /*init*/ cuda_init,
    /*destroy*/ cuda_destroy,
    /*alloc_bytes*/ cuda_alloc_bytes,
    /*release*/ cuda_release,
    /*upload_f32*/ cuda_upload,
    /*download_f32*/ cuda_download,
    /*sync*/ cuda_sync,
    /*mem_info*/ cuda_mem_info,
    /*step_begin*/ cuda_step_begin,
    /*step_end*/ cuda_step_end,
    /*graphs_clear*/ cuda_graphs_clear,
    /*has_graphs*/ cuda_has_graphs,
    /*linear_create*/ cuda_linear_create,
    /*linear_destroy*/ cuda_linear_destroy,
    /*linear_to_f32*/ cuda_linear_to_f32,
    /*matmul*/ cuda_matmul,
    /*embed*/ cuda_embed,
    /*rmsnorm*/ cuda_rmsnorm,
    /*add*/ cuda_add,
    /*silu_mul*/ cuda_silu_mul,
    /*rope*/ cuda_rope,
    /*gather_rows*/ cuda_gather_rows,
    /*attention*/ cuda_attention,
    /*kv_copy*/ cuda_kv_copy,
    /*logits_reduce*/ qq_cuda_logits_reduce,
    /*logits_topk*/ qq_cuda_logits_topk,
};
