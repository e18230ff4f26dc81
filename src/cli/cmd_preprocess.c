/* vlmc preprocess: decode an image as transformers' load_image does, run the image
 * processor named in preprocessor_config.json, write the arrays in fixture format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlmc.h"
#include "commands.h"

static const char *USAGE =
    "usage: vlmc preprocess -m MODEL_DIR|PREPROCESSOR_CONFIG --image FILE|DATA_URL --out OUT_DIR\n"
    "                       [--patch-size N] [--cls-token 0|1] [--image-seq-len N] [--max-pixels N]\n"
    "\n"
    "Decodes the image (JPEG, PNG, WebP, GIF, PPM; EXIF orientation applied, alpha dropped)\n"
    "and runs the processor named by image_processor_type (CLIPImageProcessor,\n"
    "SiglipImageProcessor, LlavaNextImageProcessor, Idefics3ImageProcessor,\n"
    "Qwen2VLImageProcessor). Writes OUT_DIR/manifest.json and one raw .bin per array:\n"
    "image_rgb, pixel_values, and image_sizes / pixel_attention_mask / image_grid_thw /\n"
    "rows / cols / num_image_tokens where they apply.\n"
    "The image-token count uses the model folder's config.json; the --patch-size,\n"
    "--cls-token and --image-seq-len options set or override its parameters.\n";

static int parse_int(const char *s, long long *v) {
    char *end;
    *v = strtoll(s, &end, 10);
    return *s && !*end;
}

int cmd_preprocess(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *out = NULL;
    long long patch = -1, cls = -1, seq = -1, max_pixels = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        int takes = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--image") || !strcmp(a, "--out") ||
                    !strcmp(a, "-o") || !strcmp(a, "--patch-size") || !strcmp(a, "--cls-token") ||
                    !strcmp(a, "--image-seq-len") || !strcmp(a, "--max-pixels");
        if (!takes) {
            fprintf(stderr, "vlmc preprocess: unknown argument '%s'\n%s", a, USAGE);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "vlmc preprocess: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long long n = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--image")) image = v;
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) out = v;
        else if (!parse_int(v, &n) || n < 0) {
            fprintf(stderr, "vlmc preprocess: %s needs a non-negative integer, not '%s'\n", a, v);
            return 2;
        } else if (!strcmp(a, "--patch-size")) patch = n;
        else if (!strcmp(a, "--cls-token")) cls = n;
        else if (!strcmp(a, "--image-seq-len")) seq = n;
        else max_pixels = n;
    }
    if (!model || !image || !out) {
        fprintf(stderr, "vlmc preprocess: -m, --image and --out are required\n%s", USAGE);
        return 2;
    }
    if (patch > 65536 || cls > 1 || seq > 1000000) {
        fprintf(stderr, "vlmc preprocess: parameter out of range\n");
        return 2;
    }
    vlmc_error err = {0};
    vlmc_image_processor *proc = NULL;
    vlmc_image *im = NULL;
    vlmc_preprocessed pp;
    memset(&pp, 0, sizeof pp);
    int rc = 1;
    vlmc_image_limits lim = {(uint64_t)max_pixels, 0};
    if (vlmc_image_processor_load(model, &proc, &err)) goto fail;
    vlmc_image_processor_set_token_params(proc, (int)patch, (int)cls, (int)seq);
    vlmc_status st = !strncmp(image, "data:", 5) ? vlmc_image_load_data_url(image, &lim, &im, &err)
                                                 : vlmc_image_load_file(image, &lim, &im, &err);
    if (st) goto fail;
    if (vlmc_preprocess(proc, im, &pp, &err)) goto fail;
    if (vlmc_preprocessed_save(proc, im, &pp, out, &err)) goto fail;
    printf("%s: %dx%d image -> pixel_values [", vlmc_image_processor_type(proc), vlmc_image_width(im),
           vlmc_image_height(im));
    for (int d = 0; d < pp.ndim; d++) printf("%s%lld", d ? ", " : "", (long long)pp.shape[d]);
    printf("]");
    if (pp.has_rows_cols) printf(", rows %d cols %d", pp.rows, pp.cols);
    if (pp.has_grid_thw)
        printf(", image_grid_thw [%d, %d, %d]", pp.image_grid_thw[0], pp.image_grid_thw[1], pp.image_grid_thw[2]);
    if (pp.num_image_tokens >= 0) printf(", %lld image tokens", (long long)pp.num_image_tokens);
    else printf(", image tokens unknown (needs the model's patch size: --patch-size / --image-seq-len)");
    printf("\nwrote %s/manifest.json\n", out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "vlmc preprocess: %s\n", err.message);
done:
    vlmc_preprocessed_free(&pp);
    vlmc_image_free(im);
    vlmc_image_processor_free(proc);
    return rc;
}
