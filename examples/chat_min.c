/* The smallest chat with vlmc.h: chat_min MODEL_DIR [IMAGE]. Each stdin line is a user message (the image goes
 * with the first); answers stream to stdout. */
#include <stdio.h>
#include <string.h>

#include "vlmc.h"

static int print_piece(const char *text, size_t len, int32_t id, void *user) {
    (void)id, (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0; /* non-zero would stop the answer */
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: chat_min MODEL_DIR [IMAGE]\n"), 2;
    vlmc_error err = {0};
    vlmc_model *model = NULL;
    vlmc_session *chat = NULL;
    vlmc_image *image = NULL;
    if (vlmc_model_load(argv[1], NULL, &model, &err) || vlmc_session_new(model, 0, &chat, &err)) goto fail;
    if (argc > 2 && (vlmc_image_load_file(argv[2], NULL, &image, &err) || vlmc_session_add_image(chat, image, &err)))
        goto fail;
    vlmc_gen_params params = vlmc_gen_default_params();
    params.max_new_tokens = 128;
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (vlmc_session_add_message(chat, "user", line, &err) ||
            vlmc_session_generate(chat, &params, print_piece, NULL, NULL, &err))
            goto fail;
        putchar('\n');
    }
    vlmc_image_free(image), vlmc_session_free(chat), vlmc_model_free(model);
    return 0;
fail:
    fprintf(stderr, "chat_min: %s\n", err.message);
    vlmc_image_free(image), vlmc_session_free(chat), vlmc_model_free(model);
    return 1;
}
