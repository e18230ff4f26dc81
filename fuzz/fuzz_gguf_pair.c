/* libFuzzer target: arbitrary bytes as llama.cpp's GGUF pair (a u32 little-endian length L, then L bytes of
 * the text model, then the mmproj); loading (metadata -> config, renaming, q/k row order, the family's
 * loader) must fail cleanly or give a model. vlm_load_gguf reads files, so the two parts are written to
 * temporary files first. Seeds: `vlmc convert` output of tiny random LLaVA / Idefics3 models. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/vlm.h"

static int write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    const size_t L = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (L > size - 4) return 0;
    char text[64], mmproj[64];
    snprintf(text, sizeof text, "/tmp/fuzz_pair_%d_text.gguf", (int)getpid());
    snprintf(mmproj, sizeof mmproj, "/tmp/fuzz_pair_%d_mmproj.gguf", (int)getpid());
    if (write_file(text, data + 4, L) && write_file(mmproj, data + 4 + L, size - 4 - L)) {
        vlm_model m;
        vlmc_error err;
        if (vlm_load_gguf(text, mmproj, &m, &err) == VLMC_OK) vlm_free(&m);
    }
    unlink(text);
    unlink(mmproj);
    return 0;
}
