/* cmd_inspect.c — `qquant inspect DIR`: what a checkpoint folder holds (config, tensors) and whether
 * its weights match its config. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qquant inspect DIR [--tensors]\n\n"
          "Loads DIR/config.json and the safetensors weights (model.safetensors, or the index and its\n"
          "shards), prints the configuration and a summary of the tensors, and checks every tensor the\n"
          "config implies (qq_config_check_weights). Exit status 1 when anything fails to load or check.\n\n"
          "  --tensors   list every tensor: name, dtype, shape, file\n");
}

static const char *quant_name(qq_quant_method m) {
  switch (m) {
    case QQ_QUANT_NONE: return "none";
    case QQ_QUANT_AWQ: return "awq";
    case QQ_QUANT_GPTQ: return "gptq";
    case QQ_QUANT_W8A8: return "w8a8 (compressed-tensors)";
    case QQ_QUANT_W8A16: return "w8a16 (compressed-tensors)";
  }
  return "?";
}

static void print_config(const qq_config *c) {
  printf("architecture      %s (model_type %s)\n", c->architecture, c->model_type);
  printf("layers            %d\n", c->num_layers);
  printf("hidden            %d (intermediate %d)\n", c->hidden_size, c->intermediate_size);
  printf("heads             %d query, %d key/value, head_dim %d\n", c->num_heads, c->num_kv_heads, c->head_dim);
  printf("vocab             %d\n", c->vocab_size);
  printf("rope_theta        %g, max positions %d, rms_norm_eps %g\n", c->rope_theta, c->max_position_embeddings,
         c->rms_norm_eps);
  printf("tied embeddings   %s\n", c->tie_word_embeddings ? "yes" : "no");
  printf("biases            qkv %s, o %s, mlp %s; qk_norm %s\n", c->qkv_bias ? "yes" : "no", c->o_bias ? "yes" : "no",
         c->mlp_bias ? "yes" : "no", c->qk_norm ? "yes" : "no");
  printf("tokens            bos %d, pad %d, eos", c->bos_token_id, c->pad_token_id);
  for (int32_t i = 0; i < c->n_eos; i++) printf(" %d", c->eos_token_ids[i]);
  printf("%s\n", c->n_eos ? "" : " none");
  if (c->torch_dtype[0]) printf("dtype             %s\n", c->torch_dtype);
  if (c->task == QQ_TASK_SEQ_CLS) {
    printf("labels            %d:", c->num_labels);
    for (int32_t i = 0; i < c->num_labels; i++) printf(" %d=%s", i, c->id2label[i]);
    printf("\n");
  }
  printf("quantization      %s", quant_name(c->quant.method));
  if (c->quant.method != QQ_QUANT_NONE)
    printf(": %d-bit, group %d, %s%s, format %s", c->quant.bits, c->quant.group_size, c->quant.sym ? "sym" : "asym",
           c->quant.desc_act ? ", act-order" : "", c->quant.format);
  printf("\n");
}

static int run(int argc, char **argv) {
  const char *dir = NULL;
  bool list = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--tensors")) {
      list = true;
    } else if (argv[i][0] != '-' && !dir) {
      dir = argv[i];
    } else {
      fprintf(stderr, "qquant inspect: unexpected argument '%s'\n\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (!dir) {
    usage(stderr);
    return 2;
  }
  qq_config c;
  qq_weights *w = NULL;
  qq_error err = {0};
  if (qq_config_load(dir, &c, &err) != QQ_OK) {
    fprintf(stderr, "qquant inspect: %s\n", err.msg);
    return 1;
  }
  print_config(&c);
  int rc = 0;
  if (qq_weights_open(dir, &w, &err) != QQ_OK) {
    fprintf(stderr, "qquant inspect: %s\n", err.msg);
    rc = 1;
    goto done;
  }
  uint64_t by_dtype[QQ_DTYPE_COUNT] = {0}, total = 0, params = 0;
  for (size_t i = 0; i < qq_weights_count(w); i++) {
    const qq_tensor_info *t = qq_weights_at(w, i);
    by_dtype[t->dtype] += t->nbytes;
    total += t->nbytes;
    params += (uint64_t)t->numel;
    if (list) {
      printf("  %-60s %-5s [", t->name, qq_dtype_name(t->dtype));
      for (int d = 0; d < t->ndim; d++) printf(d ? ", %lld" : "%lld", (long long)t->shape[d]);
      const char *base = strrchr(t->file, '/');
      printf("]  %s\n", base ? base + 1 : t->file);
    }
  }
  printf("tensors           %zu, %llu elements, %.3f GB:", qq_weights_count(w), (unsigned long long)params,
         (double)total / 1e9);
  for (int d = 0; d < QQ_DTYPE_COUNT; d++)
    if (by_dtype[d]) printf(" %s %.3f GB", qq_dtype_name((qq_dtype)d), (double)by_dtype[d] / 1e9);
  printf("\n");
  if (qq_config_check_weights(&c, w, &err) != QQ_OK) {
    printf("check             FAILED: %s\n", err.msg);
    rc = 1;
  } else {
    printf("check             ok: every tensor the config implies is present with the right shape\n");
  }
done:
  qq_weights_close(w);
  qq_config_free(&c);
  return rc;
}

const qq_command qq_cmd_inspect = {"inspect", "show a checkpoint's config and tensors and check they agree", run};
