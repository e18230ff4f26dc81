/* vlmc run: one question about zero or more images; prints the answer as it is generated, or with --json
 * {"prompt_ids", "ids", "text", "stop", "boxes", "timings"}; --draw writes the first image with the answer's boxes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vlmc.h"
#include "commands.h"
#include "gen_opts.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vlmc run -m MODEL [--image FILE]... -p PROMPT [options]\n\n"
               "Answers PROMPT about the images (in order, before the text of the user message) with the\n"
               "model's chat template, streaming the answer to stdout.\n\n"
               "  -p, --prompt TEXT        the question\n"
               "  --image FILE             an image (JPEG, PNG, WebP, GIF, BMP, PPM; repeatable)\n"
               "  --json                   print {\"prompt_ids\", \"ids\", \"text\", \"stop\", \"boxes\", \"timings\"} instead\n"
               "  --draw OUT.png           write the first image with the boxes the answer names (PNG)\n"
               "%s", GEN_OPTS_HELP);
}

enum { MAX_IMAGES = 64 };

static int stream(const char *text, size_t len, int32_t id, void *user) {
    (void)id;
    (void)user;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

static cJSON *ids_json(const int32_t *ids, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

int cmd_run(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o);
    const char *prompt = NULL, *images[MAX_IMAGES], *draw = NULL;
    int n_images = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int r = gen_opts_parse(&o, "run", argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--draw") && i + 1 < argc) draw = argv[++i];
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt") || !strcmp(a, "--image")) && i + 1 < argc) {
            if (a[1] == '-' && a[2] == 'i') {
                if (n_images == MAX_IMAGES) {
                    fprintf(stderr, "vlmc run: at most %d images\n", MAX_IMAGES);
                    return 2;
                }
                images[n_images++] = argv[++i];
            } else prompt = argv[++i];
        } else {
            fprintf(stderr, "vlmc run: %s '%s'\n\n", i + 1 >= argc && a[0] == '-' ? "missing value for" : "unknown argument", a);
            usage(stderr);
            return 2;
        }
    }
    if (!prompt) {
        fprintf(stderr, "vlmc run: no prompt given (-p TEXT)\n");
        return 2;
    }
    if (draw && !n_images) {
        fprintf(stderr, "vlmc run: --draw needs an image (--image FILE)\n");
        return 2;
    }
    vlmc_model *m = NULL;
    int rc = gen_opts_load(&o, "run", &m);
    if (rc) return rc;
    gen_opts_install_sigint(&o);
    vlmc_error err = {0};
    vlmc_session *s = NULL;
    vlmc_result res;
    memset(&res, 0, sizeof res);
    vlmc_image *first = NULL; /* the image the boxes are about */
    vlmc_box *boxes = NULL;
    size_t n_boxes = 0;
    rc = 1;
    if (vlmc_session_new(m, 0, &s, &err)) goto fail;
    if (o.system && vlmc_session_add_message(s, "system", o.system, &err)) goto fail;
    for (int i = 0; i < n_images; i++) {
        vlmc_image *im = NULL;
        if (vlmc_image_load_file(images[i], NULL, &im, &err)) goto fail;
        vlmc_status st = vlmc_session_add_image(s, im, &err);
        if (i == 0) first = im;
        else vlmc_image_free(im);
        if (st) goto fail;
    }
    if (vlmc_session_add_message(s, "user", prompt, &err)) goto fail;
    if (vlmc_session_generate(s, &o.gp, json ? NULL : stream, NULL, &res, &err)) goto fail;
    if ((json || draw) && vlmc_answer_boxes(res.text, res.text_len, first ? vlmc_image_width(first) : 0,
                                            first ? vlmc_image_height(first) : 0, &boxes, &n_boxes, &err))
        goto fail;
    if (draw && vlmc_image_save_png_with_boxes(first, boxes, n_boxes, draw, &err)) goto fail;
    if (json) {
        const int32_t *pids;
        size_t np;
        vlmc_session_prompt_ids(s, &pids, &np);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "prompt_ids", ids_json(pids, np));
        cJSON_AddItemToObject(j, "ids", ids_json(res.ids, res.n_ids));
        cJSON_AddStringToObject(j, "text", res.text);
        cJSON_AddStringToObject(j, "stop", vlmc_stop_reason_name(res.stop));
        cJSON *bl = cJSON_AddArrayToObject(j, "boxes");
        for (size_t i = 0; i < n_boxes; i++) {
            cJSON *b = cJSON_CreateObject();
            if (boxes[i].label) cJSON_AddStringToObject(b, "label", boxes[i].label);
            else cJSON_AddNullToObject(b, "label");
            /* pixels, to 1/100 */
            double v[4] = {boxes[i].x1, boxes[i].y1, boxes[i].x2, boxes[i].y2};
            cJSON *xy = cJSON_AddArrayToObject(b, "box");
            for (int k = 0; k < 4; k++) cJSON_AddItemToArray(xy, cJSON_CreateNumber(round(v[k] * 100) / 100));
            cJSON_AddItemToArray(bl, b);
        }
        cJSON *t = cJSON_AddObjectToObject(j, "timings");
        const vlmc_timings *tm = &res.timings;
        cJSON_AddNumberToObject(t, "image_encode_s", tm->image_encode_s);
        cJSON_AddNumberToObject(t, "prefill_s", tm->prefill_s);
        cJSON_AddNumberToObject(t, "decode_s", tm->decode_s);
        cJSON_AddNumberToObject(t, "n_prompt_tokens", tm->n_prompt_tokens);
        cJSON_AddNumberToObject(t, "n_prefill_tokens", tm->n_prefill_tokens);
        cJSON_AddNumberToObject(t, "n_generated", tm->n_generated);
        cJSON_AddNumberToObject(t, "prefill_tok_s", tm->prefill_tok_s);
        cJSON_AddNumberToObject(t, "decode_tok_s", tm->decode_tok_s);
        char *txt = cJSON_PrintUnformatted(j);
        if (txt) puts(txt);
        free(txt);
        cJSON_Delete(j);
    } else {
        putchar('\n');
        if (res.stop == VLMC_STOP_CANCEL) fprintf(stderr, "[interrupted]\n");
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "vlmc run: %s\n", err.message);
done:
    vlmc_boxes_free(boxes, n_boxes);
    vlmc_image_free(first);
    vlmc_result_free(&res);
    vlmc_session_free(s);
    vlmc_model_free(m);
    return rc;
}
