/* cmd_generate.c — `qquant generate`: load a model, generate from a prompt, print text or JSON. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qquant generate --model DIR --prompt TEXT [options]\n"
          "  --model DIR            Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json)\n"
          "  --prompt TEXT          prompt text (encoded with the tokenizer's special-token template, e.g. BOS)\n"
          "  --max-new-tokens N     tokens to generate (default 64)\n"
          "  --temperature T        0 = greedy (default 0)\n"
          "  --top-k K              0 = off (default 0)\n"
          "  --top-p P              1 = off (default 1)\n"
          "  --seed S               sampling seed (default 0)\n"
          "  --ignore-eos           keep generating after an end-of-sequence token\n"
          "  --device auto|cpu|cuda (default auto)\n"
          "  --dtype auto|fp32|bf16|fp16   activations on the GPU (default bf16; fp32 matches the CPU backend)\n"
          "  --threads N            CPU threads (default: all available)\n"
          "  --rope-freq exact|bf16 RoPE frequencies (default exact); bf16: Hugging Face's fp32 inv_freq rounded\n"
          "                         to bf16, as transformers computes after model.to(torch.bfloat16) (the\n"
          "                         fixtures' goldens were made that way)\n"
          "  --json                 print {\"token_ids\": [...], \"text\": ..., ...}\n");
}

typedef struct stream_ctx {
  qq_detokenizer *detok;
  char *buf;
  size_t len, cap;
  bool print;
} stream_ctx;

static bool on_token(void *user, int32_t tok) {
  stream_ctx *s = user;
  if (!s->print) return true;
  size_t before = s->len;
  qq_error err = {0};
  if (qq_detokenizer_push(s->detok, tok, &s->buf, &s->len, &s->cap, &err) == QQ_OK && s->len > before) {
    fwrite(s->buf + before, 1, s->len - before, stdout);
    fflush(stdout);
  }
  return true;
}


static int run(int argc, char **argv) {
  const char *model_dir = NULL, *prompt = NULL;
  long max_new = 64, top_k = 0, seed = 0, threads = 0;
  double temperature = 0, top_p = 1;
  bool json = false, ignore_eos = false;
  qq_device_kind device = QQ_DEVICE_AUTO;
  qq_act_dtype dtype = QQ_ACT_AUTO;
  qq_rope_freq rope_freq = QQ_ROPE_FREQ_EXACT;
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'},   {"prompt", required_argument, 0, 'p'},
      {"max-new-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, 't'},
      {"top-k", required_argument, 0, 'k'},   {"top-p", required_argument, 0, 'P'},
      {"seed", required_argument, 0, 's'},    {"device", required_argument, 0, 'd'}, {"dtype", required_argument, 0, 'D'},
      {"threads", required_argument, 0, 'T'}, {"json", no_argument, 0, 'j'},
      {"ignore-eos", no_argument, 0, 'e'},    {"help", no_argument, 0, 'h'},
      {"rope-freq", required_argument, 0, 'R'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    bool ok = true;
    switch (c) {
      case 'm': model_dir = optarg; break;
      case 'p': prompt = optarg; break;
      case 'n': ok = qq_cli_int("generate", "--max-new-tokens", optarg, 0, 1 << 20, &max_new); break;
      case 't': ok = qq_cli_float("generate", "--temperature", optarg, 0, 100, &temperature); break;
      case 'k': ok = qq_cli_int("generate", "--top-k", optarg, 0, 1 << 30, &top_k); break;
      case 'P': ok = qq_cli_float("generate", "--top-p", optarg, 1e-9, 1, &top_p); break;
      case 's': ok = qq_cli_int("generate", "--seed", optarg, 0, 0x7fffffffL, &seed); break;
      case 'T': ok = qq_cli_int("generate", "--threads", optarg, 0, 1024, &threads); break;
      case 'd': device = qq_cli_device(optarg, &ok); break;
      case 'D': dtype = qq_cli_dtype(optarg, &ok); break;
      case 'R': rope_freq = qq_cli_rope_freq(optarg, &ok); break;
      case 'j': json = true; break;
      case 'e': ignore_eos = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) return 2;
  }
  if (!model_dir || !prompt) {
    fprintf(stderr, "qquant generate: --model and --prompt are required\n");
    usage(stderr);
    return 2;
  }
  qq_error err = {0};
  qq_model_options mo = qq_model_options_default();
  mo.device = device;
  mo.act = dtype;
  mo.rope_freq = rope_freq;
  mo.n_threads = (int32_t)threads;
  qq_model *m = NULL;
  if (qq_model_load(model_dir, &mo, &m, &err) != QQ_OK) {
    fprintf(stderr, "qquant generate: %s\n", err.msg);
    return 1;
  }
  int rc = 1;
  qq_token_ids prompt_ids = {0}, out = {0};
  stream_ctx sc = {.print = !json};
  char *text = NULL;
  qq_encode_options eo = qq_encode_options_default();
  eo.add_special = true;
  if (qq_tokenizer_encode(qq_model_tokenizer(m), prompt, strlen(prompt), &eo, &prompt_ids, &err) != QQ_OK) goto fail;
  if (prompt_ids.n == 0) {
    qq_error_set(&err, QQ_ERR_INVALID_ARG, "the prompt encodes to no tokens (and the tokenizer adds no BOS)");
    goto fail;
  }
  if (qq_detokenizer_create(qq_model_tokenizer(m), true, &sc.detok, &err) != QQ_OK) goto fail;
  qq_sampling sp = {.temperature = (float)temperature, .top_k = (int32_t)top_k, .top_p = (float)top_p,
                    .seed = (uint64_t)seed};
  double t0 = qq_now_sec();
  if (qq_generate(m, prompt_ids.ids, (int32_t)prompt_ids.n, (int32_t)max_new, &sp, !ignore_eos, on_token, &sc, &out,
                  &err) != QQ_OK)
    goto fail;
  double secs = qq_now_sec() - t0;
  if (!json) {
    size_t before = sc.len;
    if (qq_detokenizer_finish(sc.detok, &sc.buf, &sc.len, &sc.cap, &err) == QQ_OK && sc.len > before)
      fwrite(sc.buf + before, 1, sc.len - before, stdout);
    printf("\n");
    fprintf(stderr, "[%zu prompt tokens, %zu generated in %.2f s, %.1f tokens/s, %s]\n", prompt_ids.n, out.n, secs,
            secs > 0 ? (double)out.n / secs : 0.0, qq_backend_description(qq_model_backend(m)));
  } else {
    size_t tlen;
    if (qq_tokenizer_decode(qq_model_tokenizer(m), out.ids, out.n, true, &text, &tlen, &err) != QQ_OK) goto fail;
    cJSON *o = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(o, "token_ids");
    for (size_t i = 0; i < out.n; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(out.ids[i]));
    cJSON_AddStringToObject(o, "text", text);
    cJSON *pids = cJSON_AddArrayToObject(o, "prompt_ids");
    for (size_t i = 0; i < prompt_ids.n; i++) cJSON_AddItemToArray(pids, cJSON_CreateNumber(prompt_ids.ids[i]));
    cJSON_AddNumberToObject(o, "seconds", secs);
    cJSON_AddStringToObject(o, "backend", qq_backend_description(qq_model_backend(m)));
    char *s = cJSON_Print(o);
    printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(o);
  }
  rc = 0;
fail:
  if (rc) fprintf(stderr, "qquant generate: %s\n", err.msg);
  free(text);
  free(sc.buf);
  qq_detokenizer_free(sc.detok);
  qq_token_ids_free(&prompt_ids);
  qq_token_ids_free(&out);
  qq_model_free(m);
  return rc;
}

const qq_command qq_cmd_generate = {"generate", "generate text from a prompt (greedy or sampled)", run};
