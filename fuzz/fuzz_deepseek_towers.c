/* libFuzzer target: arbitrary bytes as a safetensors file holding DeepSeek-VL's towers, whose architecture is read
 * from the tensor shapes: a SAM encoder under "sam." (sam_load) and a timm SigLIP under "vit." (vit_load_timm, 2
 * heads, 1 block). Loading must fail cleanly or give towers that run (small ones are run on a blank image). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "models/sam.h"
#include "models/vit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    safetensors *st = NULL;
    vlmc_error err;
    if (safetensors_open_memory(data, size, "fuzz.safetensors", &st, &err)) return 0;
    sam_model sm;
    if (!sam_load(st, "sam.", &sm, &err)) {
        bool small = sm.image_size <= 64 && sm.D <= 64 && sm.F <= 256 && sm.L <= 4 && sm.out_chans <= 32;
        for (int i = 0; i < sm.n_down; i++) small &= sm.down_ch[i] <= 64;
        if (small) {
            const int s = sam_out_side(&sm), c = sam_out_channels(&sm);
            float *img = calloc((size_t)3 * sm.image_size * sm.image_size, sizeof(float));
            float *out = malloc((size_t)s * s * c * sizeof(float));
            if (img && out) sam_encode(&sm, img, &(sam_outputs){.out = out}, &err);
            free(img);
            free(out);
        }
        sam_free(&sm);
    }
    vit_model vm;
    if (!vit_load_timm(st, "vit.", 32, 2, 1, &vm, &err)) {
        if (vm.D <= 64 && vm.F <= 256 && vm.C <= 4) {
            float *img = calloc((size_t)vm.C * 32 * 32, sizeof(float));
            int T = vit_tokens(&vm, 32, 32);
            float *out = malloc((size_t)(T > 0 ? T : 1) * vm.D * sizeof(float));
            if (img && out) vit_encode(&vm, img, 1, 32, 32, NULL, &(vit_outputs){.last_hidden_state = out}, &err);
            free(img);
            free(out);
        }
        vit_free(&vm);
    }
    safetensors_close(st);
    return 0;
}
