/* preprocessor_config.json parsing and the processors it configures, run on a small
 * fixed image with a low work limit. */
#include <stdint.h>
#include <string.h>

#include "formats/json.h"
#include "vision/processors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *cfg = NULL;
    vlmc_error err;
    if (json_parse((const char *)data, size, "fuzz", &cfg, &err) != VLMC_OK) return 0;
    image_proc p;
    if (image_proc_from_json(cfg, "fuzz", &p, &err) == VLMC_OK) {
        image_proc_set_model_config(&p, cfg);
        p.max_pixels = 1u << 18;
        static uint8_t px[23 * 17 * 3];
        for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 31);
        rgb_image im = {23, 17, px};
        rgb_image tall = {1, 23 * 17, px};
        proc_output o;
        if (image_proc_run(&p, &im, &o, &err) == VLMC_OK) proc_output_free(&o);
        if (image_proc_run(&p, &tall, &o, &err) == VLMC_OK) proc_output_free(&o);
    }
    cJSON_Delete(cfg);
    return 0;
}
