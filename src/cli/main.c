/* vlmc: the command-line tool. A thin layer: every subcommand is a file of its
 * own that parses its flags and calls the public API in include/vlmc.h. */
#include <stdio.h>
#include <string.h>

#include "vlmc.h"
#include "commands.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"info", cmd_info, "Describe a model folder or .safetensors file"},
    {"tokenize", cmd_tokenize, "Encode text with a model's tokenizer.json"},
    {"template", cmd_template, "Render a model's chat template"},
    {"preprocess", cmd_preprocess, "Decode an image and run the model's image processor"},
    {"dump", cmd_dump, "Run a model on fixture-format inputs and write its arrays"},
    {"run", cmd_run, "Answer a prompt about images"},
    {"chat", cmd_chat, "Interactive multi-turn chat"},
    {"synth", cmd_synth, "Generate the synthetic visual-world training dataset"},
    {"eval", cmd_eval, "Run benchmark tasks and score the answers (lmms-eval style results)"},
    {"serve", cmd_serve, "OpenAI-compatible chat server with images and a chat page"},
    {"train", cmd_train, "Fine-tune a model on conversations (full, LoRA, LLaVA stages)"},
    {"init", cmd_init, "Write a random-weight model folder of a real architecture's shapes"},
    {"quantize", cmd_quantize, "Write a model folder with Q8_0 / Q4_0 / Q4_K / Q6_K weights (model.gguf)"},
    {"convert", cmd_convert, "Write a LLaVA / Idefics3 model as llama.cpp's GGUF pair (model.gguf + mmproj.gguf)"},
    {"bench", cmd_bench, "Image-encode, prompt and generation speed against the machine's bounds"},
};

static void usage(FILE *f) {
    fprintf(f, "vlmc %s: vision-language models in C\n\nusage: vlmc COMMAND [options]\n\ncommands:\n", vlmc_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`vlmc COMMAND --help` describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vlmc %s\n", vlmc_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vlmc: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
