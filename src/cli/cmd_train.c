/* vlmc train: fine-tune a model folder on a conversation dataset (see vlmc_train in include/vlmc.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "commands.h"

static const char *USAGE =
    "usage: vlmc train -m MODEL_DIR --data train.jsonl --out DIR [options]\n"
    "\n"
    "Fine-tunes a llama / mistral / qwen2, llava, llava_next or idefics3 model folder (f32, CPU) on conversations\n"
    "(JSONL or JSON; HF messages or LLaVA conversations; images by path). Labels are the\n"
    "assistant turns as the model's chat template renders them (-100 elsewhere, on padding\n"
    "and on image tokens). Writes DIR/metrics.jsonl (one line per step), DIR/loss.svg,\n"
    "DIR/checkpoint-<step>/ every --save-steps, and the trained model as a Hugging Face\n"
    "folder in DIR (LoRA: merged, plus the adapter alone in DIR/adapter in PEFT's layout).\n"
    "\n"
    "  --eval-data FILE          eval loss after every epoch\n"
    "  --image-root DIR          base of relative image paths (default: the data file's folder)\n"
    "  --stage S                 full (default) | lora | projector | projector+decoder\n"
    "  --lr X                    default 2e-5 (full), 2e-4 (lora), 1e-3 (projector stages)\n"
    "  --epochs N                default 1\n"
    "  --max-steps N             optimizer steps (overrides --epochs)\n"
    "  --batch-size N            sequences per micro-batch (default 1)\n"
    "  --grad-accum N            micro-batches per optimizer step (default 1)\n"
    "  --warmup-steps N          linear warmup (default 0)\n"
    "  --lr-scheduler-type S     linear (default) | cosine | constant\n"
    "  --max-grad-norm X         clipping by global norm (default 1.0, 0 = off)\n"
    "  --weight-decay X          AdamW decay, not on biases and norms (default 0)\n"
    "  --seed N                  shuffling, LoRA init and dropout (default 42)\n"
    "  --lora-r N --lora-alpha X --lora-dropout X   default 8, 16, 0.05\n"
    "  --lora-targets LIST       of q,k,v,o,gate,up,down (default all seven)\n"
    "  --save-steps N            checkpoint every N steps\n"
    "  --resume DIR              continue exactly from DIR/checkpoint-<step>\n"
    "  --train-on-prompt         loss on every text token, not only the answers\n"
    "  --max-length N            tokens per example (default 2048)\n"
    "  --threads N               OpenMP threads (default: all)\n"
    "  --no-export               do not write the final model\n"
    "  -q, --quiet               no progress line\n";

static int num(const char *flag, const char *v, double *out) {
    char *end;
    *out = strtod(v, &end);
    if (!*v || *end) {
        fprintf(stderr, "vlmc train: %s needs a number, not '%s'\n", flag, v);
        return 0;
    }
    return 1;
}

int cmd_train(int argc, char **argv) {
    vlmc_train_params p;
    vlmc_train_params_default(&p);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!strcmp(a, "--train-on-prompt")) { p.train_on_prompt = 1; continue; }
        if (!strcmp(a, "--no-export")) { p.no_export = 1; continue; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { p.quiet = 1; continue; }
        static const char *const with_value[] = {
            "-m", "--model", "--data", "--eval-data", "--image-root", "--out", "-o", "--stage", "--lr", "--epochs",
            "--max-steps", "--batch-size", "--grad-accum", "--warmup-steps", "--lr-scheduler-type",
            "--max-grad-norm", "--weight-decay", "--seed", "--lora-r", "--lora-alpha", "--lora-dropout",
            "--lora-targets", "--save-steps", "--resume", "--max-length", "--threads"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            fprintf(stderr, "vlmc train: unknown argument '%s'\n%s", a, USAGE);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vlmc train: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        double x = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) p.model_dir = v;
        else if (!strcmp(a, "--data")) p.data_path = v;
        else if (!strcmp(a, "--eval-data")) p.eval_data_path = v;
        else if (!strcmp(a, "--image-root")) p.image_root = v;
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) p.out_dir = v;
        else if (!strcmp(a, "--stage")) p.stage = v;
        else if (!strcmp(a, "--lr-scheduler-type")) p.lr_scheduler_type = v;
        else if (!strcmp(a, "--lora-targets")) p.lora_targets = v;
        else if (!strcmp(a, "--resume")) p.resume_from = v;
        else if (!num(a, v, &x)) return 2;
        else if (!strcmp(a, "--lr")) p.lr = x;
        else if (!strcmp(a, "--epochs")) p.epochs = (int)x;
        else if (!strcmp(a, "--max-steps")) p.max_steps = (int)x;
        else if (!strcmp(a, "--batch-size")) p.batch_size = (int)x;
        else if (!strcmp(a, "--grad-accum")) p.grad_accum = (int)x;
        else if (!strcmp(a, "--warmup-steps")) p.warmup_steps = (int)x;
        else if (!strcmp(a, "--max-grad-norm")) p.max_grad_norm = x;
        else if (!strcmp(a, "--weight-decay")) p.weight_decay = x;
        else if (!strcmp(a, "--seed")) p.seed = (uint64_t)x;
        else if (!strcmp(a, "--lora-r")) p.lora_r = (int)x;
        else if (!strcmp(a, "--lora-alpha")) p.lora_alpha = x;
        else if (!strcmp(a, "--lora-dropout")) p.lora_dropout = x;
        else if (!strcmp(a, "--save-steps")) p.save_steps = (int)x;
        else if (!strcmp(a, "--max-length")) p.max_length = (int)x;
        else if (!strcmp(a, "--threads")) p.n_threads = (int)x;
    }
    if (!p.model_dir || !p.data_path || !p.out_dir) {
        fprintf(stderr, "vlmc train: -m MODEL_DIR, --data FILE and --out DIR are required\n%s", USAGE);
        return 2;
    }
    vlmc_error err = {0};
    vlmc_status s = vlmc_train(&p, NULL, NULL, &err);
    if (s) {
        fprintf(stderr, "vlmc train: %s\n", err.message);
        return 1;
    }
    if (!p.quiet) fprintf(stderr, "vlmc train: done; metrics in %s/metrics.jsonl, curve in %s/loss.svg\n", p.out_dir,
                          p.out_dir);
    return 0;
}
