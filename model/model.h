/* model.h — the one public header of model/: Hugging Face checkpoints (config.json, safetensors,
 * shards), tokenizer.json (BPE), and the transformer forward pass over a compute backend.
 *
 * Ownership: a pointer parameter is borrowed for the duration of the call unless its comment says
 * "transferred" or "kept" (borrowed for the lifetime of the object). Every *_free/close(NULL) is a
 * no-op. Every function that can fail returns qq_status and fills the optional qq_error.
 *
 * Sections: dtypes and tensors | safetensors files | checkpoint directories | config.json |
 *           tokenizer | model and forward pass | KV cache | sampling
 */
#ifndef QQ_MODEL_H
#define QQ_MODEL_H

#include "kernels.h"
#include "qq_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================ dtypes and tensors ================================ */

/* Safetensors dtypes. Append only. */
typedef enum qq_dtype {
  QQ_DTYPE_F32 = 0,
  QQ_DTYPE_F16 = 1,
  QQ_DTYPE_BF16 = 2,
  QQ_DTYPE_F64 = 3,
  QQ_DTYPE_I8 = 4,
  QQ_DTYPE_U8 = 5,
  QQ_DTYPE_I16 = 6,
  QQ_DTYPE_I32 = 7,
  QQ_DTYPE_I64 = 8,
  QQ_DTYPE_BOOL = 9,
  QQ_DTYPE_COUNT
} qq_dtype;

size_t qq_dtype_size(qq_dtype dt);        /* bytes per element */
const char *qq_dtype_name(qq_dtype dt);   /* safetensors spelling: "F32", "BF16", ... */
/* Parses a safetensors dtype string; QQ_ERR_UNSUPPORTED for dtypes qquant does not read (F8_*...). */
qq_status qq_dtype_parse(const char *s, qq_dtype *out);

#define QQ_MAX_DIMS 8

/* A tensor inside an open file. data points into the memory map (little-endian, row-major). */
typedef struct qq_tensor_info {
  const char *name;
  qq_dtype dtype;
  int32_t ndim;
  int64_t shape[QQ_MAX_DIMS];
  int64_t numel;
  const void *data;
  size_t nbytes;
  const char *file; /* path (or name) of the file that holds it, for error messages */
} qq_tensor_info;

/* Converts a floating tensor (F32/F16/BF16/F64) to fp32; out holds numel floats. */
qq_status qq_tensor_to_f32(const qq_tensor_info *t, float *out, qq_error *err);

/* ================================ safetensors files ================================ */

typedef struct qq_safetensors qq_safetensors;

/* Opens and memory-maps one .safetensors file and validates its whole header: 8-byte length inside the
 * file, JSON object, every entry with a known dtype, shape and data_offsets, offsets inside the data
 * section, byte size equal to numel * dtype size, no two tensors overlapping. */
qq_status qq_safetensors_open(const char *path, qq_safetensors **out, qq_error *err);
/* Same validation over a buffer (kept: must outlive the handle). name is used in messages. */
qq_status qq_safetensors_parse(const void *buf, size_t len, const char *name, qq_safetensors **out,
                               qq_error *err);
void qq_safetensors_close(qq_safetensors *st);
size_t qq_safetensors_count(const qq_safetensors *st);
const qq_tensor_info *qq_safetensors_at(const qq_safetensors *st, size_t i);
const qq_tensor_info *qq_safetensors_find(const qq_safetensors *st, const char *name);
/* Value of a "__metadata__" string entry, or NULL. */
const char *qq_safetensors_metadata(const qq_safetensors *st, const char *key);

/* Tensor to write: data borrowed for the duration of the write call. */
typedef struct qq_tensor_write {
  const char *name;
  qq_dtype dtype;
  int32_t ndim;
  int64_t shape[QQ_MAX_DIMS];
  const void *data;
} qq_tensor_write;

/* Writes one safetensors file (atomically: temp file + rename). metadata: NULL or n_meta key/value
 * pairs stored in "__metadata__". */
qq_status qq_safetensors_write(const char *path, const qq_tensor_write *tensors, size_t n,
                               const char *const *meta_keys, const char *const *meta_values,
                               size_t n_meta, qq_error *err);

/* ================================ checkpoint directories ================================ */

typedef struct qq_weights qq_weights;

/* Opens a Hugging Face checkpoint directory: model.safetensors, or model.safetensors.index.json and
 * every shard it names (each validated as above; a shard that is missing, or a tensor that the index
 * places in a shard that does not hold it, is an error naming both). */
qq_status qq_weights_open(const char *dir, qq_weights **out, qq_error *err);
void qq_weights_close(qq_weights *w);
size_t qq_weights_count(const qq_weights *w);
const qq_tensor_info *qq_weights_at(const qq_weights *w, size_t i);
const qq_tensor_info *qq_weights_find(const qq_weights *w, const char *name); /* NULL if absent */
/* Like find, but a missing tensor is QQ_ERR_NOT_FOUND naming the tensor and the directory. */
qq_status qq_weights_get(const qq_weights *w, const char *name, const qq_tensor_info **out, qq_error *err);

/* Writes tensors into dir as model.safetensors, or as model-0000i-of-0000N.safetensors shards of at
 * most max_shard_bytes each plus model.safetensors.index.json when they do not fit in one
 * (max_shard_bytes 0: one file). Metadata is written into every file. */
qq_status qq_weights_write_dir(const char *dir, const qq_tensor_write *tensors, size_t n,
                               size_t max_shard_bytes, const char *const *meta_keys,
                               const char *const *meta_values, size_t n_meta, qq_error *err);

/* Supplies tensor bytes while a checkpoint is written, so that one larger than memory can be written
 * a chunk at a time: called in file order with increasing offsets to fill buf with bytes
 * [offset, offset + nbytes) of tensors[index] (chunks of at most 32 MiB). A non-OK status aborts the
 * write (no partial file is left behind). */
typedef qq_status (*qq_tensor_fill_fn)(void *user, size_t index, size_t offset, void *buf, size_t nbytes,
                                       qq_error *err);
/* Like qq_weights_write_dir, but tensors[i].data is ignored (may be NULL): the bytes come from fill. */
qq_status qq_weights_write_dir_fill(const char *dir, const qq_tensor_write *tensors, size_t n,
                                    size_t max_shard_bytes, const char *const *meta_keys,
                                    const char *const *meta_values, size_t n_meta, qq_tensor_fill_fn fill,
                                    void *user, qq_error *err);
/* Directory name given to qq_weights_open (for messages). */
const char *qq_weights_dir(const qq_weights *w);

/* ================================ config.json ================================ */

typedef enum qq_arch { QQ_ARCH_QWEN2 = 0, QQ_ARCH_QWEN3 = 1, QQ_ARCH_LLAMA = 2 } qq_arch;
typedef enum qq_task { QQ_TASK_CAUSAL_LM = 0, QQ_TASK_SEQ_CLS = 1 } qq_task;

/* Quantization described by config.json's "quantization_config" (append only). */
typedef enum qq_quant_method {
  QQ_QUANT_NONE = 0,
  QQ_QUANT_AWQ = 1,      /* AutoAWQ, version "gemm" */
  QQ_QUANT_GPTQ = 2,     /* GPTQ (quant_method "gptq"), v1 layout or GPTQModel's gptq_v2 zeros */
  QQ_QUANT_W8A8 = 3,     /* compressed-tensors, format "int-quantized", int8 weights + int8 activations */
  QQ_QUANT_W8A16 = 4,    /* compressed-tensors "int-quantized" with weights only (8-bit) */
} qq_quant_method;

typedef struct qq_quant_config {
  qq_quant_method method;
  int32_t bits;         /* weight bits: 3, 4 or 8 */
  int32_t group_size;   /* input channels per scale; -1 = per output channel */
  bool sym;             /* symmetric (no zero points stored / zero fixed at 2^(bits-1)) */
  bool desc_act;        /* GPTQ act-order: g_idx is meaningful */
  bool act_dynamic;     /* W8A8: per-token dynamic activation scales (else static per-tensor) */
  char format[32];      /* "gemm", "gptq", "gptq_v2", "int-quantized" */
  char *raw_json;       /* the whole quantization_config object, unformatted (owned) */
} qq_quant_config;

#define QQ_MAX_EOS 8

typedef struct qq_config {
  char architecture[64];  /* e.g. "Qwen2ForCausalLM" */
  char model_type[32];    /* "qwen2", "qwen3", "llama" */
  qq_arch arch;
  qq_task task;
  int32_t hidden_size;
  int32_t intermediate_size;
  int32_t num_layers;
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;       /* explicit "head_dim" or hidden_size / num_heads */
  int32_t vocab_size;
  int32_t max_position_embeddings;
  double rms_norm_eps;
  double rope_theta;      /* top-level "rope_theta" or "rope_parameters.rope_theta" */
  bool tie_word_embeddings;
  bool qkv_bias;          /* q/k/v projections carry a bias (Qwen2; Llama with attention_bias) */
  bool o_bias;            /* o_proj carries a bias (Llama with attention_bias) */
  bool mlp_bias;          /* Llama mlp_bias */
  bool qk_norm;           /* per-head RMSNorm on q and k before RoPE (Qwen3) */
  int32_t bos_token_id;   /* -1 if none */
  int32_t eos_token_ids[QQ_MAX_EOS];
  int32_t n_eos;
  int32_t pad_token_id;   /* -1 if none */
  int32_t num_labels;     /* sequence classification: rows of score.weight */
  char **id2label;        /* [num_labels] owned strings, NULL for causal LMs */
  char torch_dtype[16];   /* "bfloat16", "float32", ... as written */
  qq_quant_config quant;
} qq_config;

/* Parses config.json text. name is used in messages ("qwen2-tiny-lm/config.json"). Unsupported
 * architectures, rope types (rope_scaling / rope_parameters.rope_type other than "default"), sliding
 * windows and activations are QQ_ERR_UNSUPPORTED naming the field. */
qq_status qq_config_parse(const char *json, size_t len, const char *name, qq_config *out, qq_error *err);
/* Reads dir/config.json. */
qq_status qq_config_load(const char *dir, qq_config *out, qq_error *err);
void qq_config_free(qq_config *cfg);
/* Checks that every tensor the config implies exists with the expected shape and a dtype qquant can
 * use (names the tensor, its shape and the config field that disagrees). */
qq_status qq_config_check_weights(const qq_config *cfg, const qq_weights *w, qq_error *err);
/* Whether the linear module (e.g. "model.layers.3.mlp.up_proj", "lm_head") is stored quantized under
 * cfg->quant: AWQ skips modules_to_not_convert and lm_head; GPTQ quantizes lm_head only with
 * "lm_head": true; compressed-tensors skips its "ignore" list (names or "re:" patterns). Sequence
 * classification heads ("score") are never quantized by AWQ/GPTQ/compressed-tensors here. */
bool qq_config_linear_is_quantized(const qq_config *cfg, const char *module);

/* ================================ synthetic checkpoints ================================
 * `qquant synth`: a valid Hugging Face Qwen2ForCausalLM folder with real model shapes and RANDOM
 * weights (for shape, memory and throughput work without downloading a model): config.json,
 * safetensors (sharded + index above max_shard_bytes, written tensor by tensor so memory stays flat),
 * a small byte-level BPE tokenizer.json (Qwen2 structure) and tokenizer_config.json. */

/* Called while tensor bytes are written: bytes_done of bytes_total, tensor being written. */
typedef void (*qq_synth_progress_fn)(void *user, const char *tensor, uint64_t bytes_done, uint64_t bytes_total);

/* (added) Quantized linears: a module above model/ (quantize/synth.c writes AutoAWQ, GPTQ and
 * compressed-tensors this way) replaces each decoder-layer linear's "<module>.weight" [n, k] by the
 * tensors "<module>.<suffix>" it describes, fills their bytes, and supplies config.json's
 * quantization_config. Embeddings, lm_head, norms and biases stay dense. */
#define QQ_SYNTH_MAX_LIN_TENSORS 4
typedef struct qq_synth_lin_tensor {
  char suffix[16];   /* "qweight", "weight_scale", ... */
  qq_dtype dtype;
  int32_t ndim;      /* 1 or 2 */
  int64_t shape[2];
} qq_synth_lin_tensor;
typedef struct qq_synth_linears {
  /* The tensors of a linear with n outputs and k inputs: t[0..*count), *count ≤ QQ_SYNTH_MAX_LIN_TENSORS.
   * Called for every linear before anything is written; an error (e.g. a group size that does not
   * divide k) stops the write with the folder untouched. */
  qq_status (*describe)(void *user, int32_t n, int32_t k, qq_synth_lin_tensor *t, int32_t *count, qq_error *err);
  /* Bytes [offset, offset + nbytes) of tensor `part` of linear `lin` (a qq_linear_id) of `layer`.
   * Calls come in file order, in chunks of at most 32 MiB. */
  qq_status (*fill)(void *user, int32_t layer, int32_t lin, int32_t n, int32_t k, int32_t part, size_t offset,
                    void *buf, size_t nbytes, qq_error *err);
  const char *quantization_config; /* a JSON object (copied into config.json) */
  void *user;
} qq_synth_linears;

typedef struct qq_synth_options {
  const char *shape;        /* "tiny", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b" (qq_synth_shapes) */
  uint64_t seed;            /* weights are a pure function of (seed, tensor, element) */
  qq_dtype dtype;           /* QQ_DTYPE_BF16 (default) or QQ_DTYPE_F32: the dense tensors */
  bool force;               /* write into a non-empty folder (else QQ_ERR_EXISTS) */
  size_t max_shard_bytes;   /* default 2 GiB */
  qq_synth_progress_fn progress; /* optional */
  void *user;
  const qq_synth_linears *linears; /* (added) NULL: dense linears (borrowed for the call) */
  int32_t n_threads;        /* (added) threads generating values; 0 = qq_cpu_default_threads(). The
                             * bytes do not depend on it. */
} qq_synth_options;
qq_synth_options qq_synth_options_default(void); /* tiny, seed 0, BF16, 2 GiB shards, dense */
/* NULL-terminated list of the shape names. */
const char *const *qq_synth_shapes(void);
/* Total bytes of tensor data the shape has in dtype with dense linears (0 for an unknown shape). */
uint64_t qq_synth_bytes(const char *shape, qq_dtype dtype);
/* (added) The configuration qq_synth_write writes for opt, parsed (free with qq_config_free):
 * the shape's dimensions for code that needs them before writing. QQ_ERR_INVALID_ARG for an unknown
 * shape, a dtype other than BF16/F32 or a quantization_config that is not a JSON object. */
qq_status qq_synth_config(const qq_synth_options *opt, qq_config *out, qq_error *err);
qq_status qq_synth_write(const char *dir, const qq_synth_options *opt, qq_error *err);

/* ================================ tokenizer ================================ */

typedef struct qq_tokenizer qq_tokenizer;

/* Loads a tokenizer.json with a BPE model: byte-level (GPT-2 / Qwen: NFC normalizer, Split
 * pre-tokenizer regex, ByteLevel) or SentencePiece-style (Llama: Replace/Prepend normalizer,
 * byte_fallback, Metaspace-like decoding). Anything else is QQ_ERR_UNSUPPORTED naming the field. */
qq_status qq_tokenizer_load(const char *path, qq_tokenizer **out, qq_error *err);
qq_status qq_tokenizer_load_json(const char *json, size_t len, const char *name, qq_tokenizer **out,
                                 qq_error *err);
void qq_tokenizer_free(qq_tokenizer *tok);

/* A growable id array; zero-initialise, append through encode, free with qq_token_ids_free. */
typedef struct qq_token_ids {
  int32_t *ids;
  size_t n;
  size_t cap;
} qq_token_ids;
void qq_token_ids_free(qq_token_ids *ids);

typedef struct qq_encode_options {
  bool parse_special; /* match added tokens inside the text (HF default: true) */
  bool add_special;   /* apply the post-processor template (e.g. Llama's BOS) (HF default: true) */
} qq_encode_options;
qq_encode_options qq_encode_options_default(void); /* {parse_special = true, add_special = false} */

/* Encodes len bytes of UTF-8 text and appends the ids to out. Invalid UTF-8 is QQ_ERR_INVALID_ARG.
 * Like HF's encode, the "truncation" and "padding" of tokenizer.json apply to the result (the
 * qwen2-tiny-spam-cls tokenizer truncates to 256 tokens); opt NULL means qq_encode_options_default().
 * Thread-safe: any number of threads may encode with one tokenizer at once. */
qq_status qq_tokenizer_encode(const qq_tokenizer *tok, const char *text, size_t len,
                              const qq_encode_options *opt, qq_token_ids *out, qq_error *err);
/* Decodes ids into a NUL-terminated heap string (*out transferred to the caller; free()). Ids out of
 * range are QQ_ERR_INVALID_ARG. Byte sequences that are not valid UTF-8 decode to U+FFFD, as HF does. */
qq_status qq_tokenizer_decode(const qq_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                              char **out, size_t *out_len, qq_error *err);
int32_t qq_tokenizer_vocab_size(const qq_tokenizer *tok);                   /* max id + 1 */
int32_t qq_tokenizer_token_to_id(const qq_tokenizer *tok, const char *s);   /* -1 if absent */
const char *qq_tokenizer_id_to_token(const qq_tokenizer *tok, int32_t id);  /* NULL if out of range */
bool qq_tokenizer_is_special(const qq_tokenizer *tok, int32_t id);

/* Incremental decoder for streaming: push ids one at a time; each push returns the text that became
 * complete (only whole UTF-8 characters, and for SentencePiece the leading-space rule applied as in a
 * full decode), so that the concatenation of every push plus finish equals qq_tokenizer_decode. */
typedef struct qq_detokenizer qq_detokenizer;
qq_status qq_detokenizer_create(const qq_tokenizer *tok /* kept */, bool skip_special,
                                qq_detokenizer **out, qq_error *err);
/* Appends the newly complete text to *buf (heap, grown with realloc; *len updated, NUL-terminated). */
qq_status qq_detokenizer_push(qq_detokenizer *d, int32_t id, char **buf, size_t *len, size_t *cap,
                              qq_error *err);
/* Flushes bytes still pending (an incomplete UTF-8 tail becomes U+FFFD). */
qq_status qq_detokenizer_finish(qq_detokenizer *d, char **buf, size_t *len, size_t *cap, qq_error *err);
void qq_detokenizer_free(qq_detokenizer *d);

/* ================================ model and forward pass ================================ */

typedef struct qq_model qq_model;

typedef struct qq_model_options {
  qq_device_kind device;  /* QQ_DEVICE_AUTO: CUDA when a GPU is present, else CPU */
  int32_t n_threads;      /* CPU threads; 0 = qq_cpu_default_threads() */
  qq_act_dtype act;       /* activation dtype (QQ_ACT_AUTO: fp32 on the CPU, bf16 on CUDA) */
  bool load_tokenizer;    /* default true: tokenizer.json is required when set */
  /* RoPE frequencies (kernels.h qq_rope_freq). QQ_ROPE_FREQ_EXACT (default): theta^(-2j/head_dim)
   * computed exactly. QQ_ROPE_FREQ_BF16: inv_freq computed in fp32 as Hugging Face does, then rounded
   * to bf16 (RNE) — what transformers computes after a model's buffers went through bf16
   * (model.to(torch.bfloat16)); the fixtures' goldens were made that way (docs/correctness.md). */
  qq_rope_freq rope_freq;
} qq_model_options;
qq_model_options qq_model_options_default(void);

/* Loads config.json, the weights (memory-mapped; converted to the backend's formats) and
 * tokenizer.json from dir. */
qq_status qq_model_load(const char *dir, const qq_model_options *opt, qq_model **out, qq_error *err);
void qq_model_free(qq_model *m);
const qq_config *qq_model_config(const qq_model *m);
const qq_tokenizer *qq_model_tokenizer(const qq_model *m); /* NULL if not loaded */
/* Width of one output row: vocab_size for causal LMs, num_labels for sequence classifiers. */
int32_t qq_model_output_dim(const qq_model *m);
qq_backend *qq_model_backend(qq_model *m);

/* ================================ KV cache ================================ */

typedef struct qq_kv_cache qq_kv_cache;

typedef struct qq_kv_options {
  int32_t block_tokens;  /* tokens per block (default 16) */
  int32_t n_blocks;      /* total blocks; 0 = enough for max_seqs * max_seq_len */
  int32_t max_seqs;      /* live sequences at most (default 64) */
  int32_t max_seq_len;   /* tokens per sequence at most (default max_position_embeddings) */
} qq_kv_options;
qq_kv_options qq_kv_options_default(void);

qq_status qq_kv_cache_create(qq_model *m, const qq_kv_options *opt, qq_kv_cache **out, qq_error *err);
void qq_kv_cache_free(qq_kv_cache *kv);
/* Opens an empty sequence; QQ_ERR_EXHAUSTED when max_seqs are live. */
qq_status qq_kv_seq_open(qq_kv_cache *kv, int32_t *seq, qq_error *err);
/* Opens a sequence that shares (copies) the first n_tokens of src's cache. */
qq_status qq_kv_seq_fork(qq_kv_cache *kv, int32_t src, int32_t n_tokens, int32_t *seq, qq_error *err);
void qq_kv_seq_close(qq_kv_cache *kv, int32_t seq); /* frees its blocks at once */
int32_t qq_kv_seq_len(const qq_kv_cache *kv, int32_t seq);
int32_t qq_kv_free_blocks(const qq_kv_cache *kv);
int32_t qq_kv_total_blocks(const qq_kv_cache *kv);
int32_t qq_kv_block_tokens(const qq_kv_cache *kv);

/* One sequence's share of a forward step: n_tokens new tokens appended after the tokens already in
 * its cache (a prefill chunk or a single decode token). */
typedef struct qq_forward_item {
  int32_t seq;
  const int32_t *tokens;
  int32_t n_tokens;
  bool all_rows;  /* output a row for every new token (perplexity); else only for the last one */
} qq_forward_item;

/* Runs one batched step. out receives, item after item, (all_rows ? n_tokens : 1) rows of
 * qq_model_output_dim floats (logits, or label scores for classifiers). QQ_ERR_EXHAUSTED when the KV
 * cache has no room (nothing is changed then). */
qq_status qq_model_forward(qq_model *m, qq_kv_cache *kv, const qq_forward_item *items, int32_t n_items,
                           float *out, qq_error *err);
/* As qq_model_forward, but the output rows stay in backend memory: *logits receives the buffer
 * (rows of qq_model_output_dim elements in the backend's activation dtype, in the order above) for the
 * qq_op_logits_* reductions, qq_sampler_pick or qq_backend_download_f32. It stays valid until the next
 * forward step of this model (any cache) or layer-access call (qq_model_head_forward ...). */
qq_status qq_model_forward_dev(qq_model *m, qq_kv_cache *kv, const qq_forward_item *items, int32_t n_items,
                               const void **logits, qq_error *err);

/* ================================ layer access (calibration) ================================
 * The quantizer runs the model one decoder layer at a time over fp32 activations on the CPU backend.
 * These functions work on host fp32 arrays and need no KV cache (one sequence, positions 0..n-1). */

typedef enum qq_linear_id {
  QQ_LIN_Q = 0, QQ_LIN_K = 1, QQ_LIN_V = 2, QQ_LIN_O = 3,
  QQ_LIN_GATE = 4, QQ_LIN_UP = 5, QQ_LIN_DOWN = 6,
  QQ_LIN_COUNT = 7
} qq_linear_id;
const char *qq_linear_id_name(qq_linear_id id); /* "q_proj", ..., "down_proj" */
/* HF tensor name of a layer's linear weight: "model.layers.3.self_attn.q_proj.weight". */
void qq_linear_tensor_name(int32_t layer, qq_linear_id id, char *buf, size_t cap);

typedef enum qq_norm_id { QQ_NORM_INPUT = 0, QQ_NORM_POST_ATTN = 1 } qq_norm_id;

/* Called with the input x [n][in_dim] of each linear of the layer as the layer runs (q, k and v share
 * one input; gate and up share one). x is borrowed for the call. */
typedef void (*qq_capture_fn)(void *user, int32_t layer, qq_linear_id lin, const float *x, int32_t n,
                              int32_t in_dim);

/* The four parts of a decoder layer, in order; running them one after another over x is
 * qq_model_layer_forward. Calibration runs one part over every sample before the next, so that a
 * part's linears can be quantized with statistics of inputs produced by the already-quantized parts. */
typedef enum qq_layer_part {
  QQ_PART_ATTN = 0,    /* buf [n][q_dim] = attention(norm_in(x)) — o_proj's input; x unchanged */
  QQ_PART_O = 1,       /* x += buf·Wo */
  QQ_PART_MLP_ACT = 2, /* buf [n][intermediate] = silu(norm_post(x)·Wg) ⊙ (norm_post(x)·Wu) — down_proj's input */
  QQ_PART_DOWN = 3     /* x += buf·Wd */
} qq_layer_part;

/* x [n][hidden] = embedding rows of tokens. */
qq_status qq_model_embed(qq_model *m, const int32_t *tokens, int32_t n, float *x, qq_error *err);
/* x [n][hidden] <- decoder layer `layer` applied to x (causal, positions 0..n-1). cap may be NULL. */
qq_status qq_model_layer_forward(qq_model *m, int32_t layer, float *x, int32_t n, qq_capture_fn cap,
                                 void *user, qq_error *err);
/* One part of decoder layer `layer` over one sequence x [n][hidden] at positions 0..n-1 (host fp32; see
 * qq_layer_part for what it reads and writes). */
qq_status qq_model_layer_part(qq_model *m, int32_t layer, qq_layer_part part, float *x, float *buf, int32_t n,
                              qq_error *err);
/* A second handle on m's weights with its own scratch buffers, so that another thread can run
 * qq_model_layer_part / qq_model_layer_forward on other samples at the same time (CPU backend only:
 * its ops keep no state between calls). The view must not change weights or norms, and must be freed
 * before m. */
qq_status qq_model_view_create(qq_model *m, qq_model **out, qq_error *err);
void qq_model_view_free(qq_model *view);
/* Final norm + head on the rows of x [n][hidden]: out [n][output_dim]. */
qq_status qq_model_head_forward(qq_model *m, const float *x, int32_t n, float *out, qq_error *err);
/* Replaces a layer's linear weight (and bias) with a new one (fp32 or quantized, see kernels.h). */
qq_status qq_model_set_linear(qq_model *m, int32_t layer, qq_linear_id id, const qq_linear_desc *desc,
                              qq_error *err);
/* Current weight of a layer's linear as fp32 [n][k] (dequantized if quantized); bias [n] or NULL. */
qq_status qq_model_get_linear_f32(qq_model *m, int32_t layer, qq_linear_id id, float *w, float *bias,
                                  qq_error *err);
/* Replaces / reads a layer's RMSNorm weight [hidden]. */
qq_status qq_model_set_norm(qq_model *m, int32_t layer, qq_norm_id id, const float *w, qq_error *err);
qq_status qq_model_get_norm(qq_model *m, int32_t layer, qq_norm_id id, float *w, qq_error *err);

/* ================================ sampling ================================ */

typedef struct qq_sampling {
  float temperature; /* 0 = greedy (argmax; ties to the lowest id) */
  int32_t top_k;     /* 0 = off */
  float top_p;       /* 1 = off */
  uint64_t seed;
} qq_sampling;
qq_sampling qq_sampling_default(void); /* greedy */
/* Validates ranges: temperature in [0, 100], top_k >= 0, top_p in (0, 1]. */
qq_status qq_sampling_check(const qq_sampling *s, qq_error *err);

typedef struct qq_sampler qq_sampler;
qq_status qq_sampler_create(const qq_sampling *s, qq_sampler **out, qq_error *err);
void qq_sampler_free(qq_sampler *s);
/* Picks the next token from n logits (not modified). Reproducible for a given seed and call order. */
int32_t qq_sampler_sample(qq_sampler *s, const float *logits, int32_t n);

/* ---- sampling from logits in backend memory (the GPU) ----
 * Greedy needs only each row's argmax (qq_op_logits_reduce); top-k and top-p need the best candidates
 * of the row (qq_op_logits_topk): the rest of the row cannot be drawn. qq_sampler_pick does that on
 * any backend and downloads a whole row only where candidates cannot decide; the tokens are those
 * qq_sampler_sample would pick from the downloaded rows, draw for draw (the same generator). */

/* What one sampler needs from a row of n logits: 0 = the argmax only (greedy); k > 0 = the k best
 * candidates of v = logit · *scale (*want_total: and the row's Σ exp(v − v_max), for top-p over the
 * whole row); -1 = the whole row (plain temperature sampling, top_k > QQ_TOPK_MAX). */
int32_t qq_sampler_candidates_wanted(const qq_sampler *s, int32_t n, float *scale, bool *want_total);
/* Draws from c >= the wanted number of candidates of a row of n (vals/ids as qq_op_logits_topk returns
 * them for the scale above; row_total its sum, or 0 when not wanted). Returns the token qq_sampler_sample
 * would return for the full row, or -1 without drawing when the candidates cannot decide (a top-p
 * nucleus beyond them or too close to call); then sample the full row. */
int32_t qq_sampler_sample_candidates(qq_sampler *s, const float *vals, const int32_t *ids, int32_t c, int32_t n,
                                     double row_total);
/* Next tokens of `count` rows of a logits buffer in backend memory (rows of n, the backend's activation
 * dtype): entry i is row rows[i] drawn with samplers[i] (distinct samplers) into tokens[i]. Greedy
 * entries take one qq_op_logits_reduce, candidate entries one qq_op_logits_topk, the rest a row
 * download each. */
qq_status qq_sampler_pick(qq_backend *be, const void *logits, int32_t n, qq_sampler *const *samplers,
                          const int32_t *rows, int32_t count, int32_t *tokens, qq_error *err);

/* ================================ generation and evaluation ================================ */

/* Progress callback for long work: done of total units (windows, examples, tokens). */
typedef void (*qq_eval_progress_fn)(void *user, int64_t done, int64_t total);

/* Called with each generated token; return false to stop early. */
typedef bool (*qq_token_fn)(void *user, int32_t token);

/* Single-sequence generation: prefill the prompt, then up to max_new tokens chosen by the sampler.
 * Stops at an EOS id of the config when stop_at_eos (the EOS token is appended to out). out receives
 * the generated ids only. cb may be NULL. */
qq_status qq_generate(qq_model *m, const int32_t *prompt, int32_t n_prompt, int32_t max_new,
                      const qq_sampling *sampling, bool stop_at_eos, qq_token_fn cb, void *user,
                      qq_token_ids *out, qq_error *err);

typedef struct qq_ppl_result {
  double mean_nll;   /* mean negative log-likelihood (nats) over scored positions */
  double ppl;        /* exp(mean_nll) */
  int64_t tokens;    /* scored positions */
  int32_t windows;
  /* Only with a reference model: */
  double ref_mean_nll;
  double mean_kl;    /* mean over positions of KL(P_ref || P_model) (nats) */
  double max_kl;
  double top1_agree; /* fraction of positions where both argmax agree */
} qq_ppl_result;

/* Perplexity protocol of the fixtures: ids cut into non-overlapping windows of `window` tokens (the
 * first max_windows of them; 0 = all whole windows), each scored from no context over positions
 * 1..window-1. With ref (another model with the same vocabulary), also the KL divergence of the
 * next-token distributions against it. */
qq_status qq_eval_perplexity(qq_model *m, qq_model *ref, const int32_t *ids, size_t n, int32_t window,
                             int32_t max_windows, qq_eval_progress_fn progress, void *user, qq_ppl_result *res,
                             qq_error *err);

/* Scores several independent sequences in batched steps: out [count][output_dim] receives the
 * output row of each sequence's last token (logits, or label scores for classifiers). */
qq_status qq_model_score_last(qq_model *m, const int32_t *const *ids, const int32_t *lens, int32_t count,
                              float *out, qq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QQ_MODEL_H */
