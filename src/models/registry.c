/* The model families vlmc runs, looked up by config.json's model_type. Each family file exports its descriptor;
 * adding a family is one line here and one file. */
#include <string.h>

#include "models/vlm.h"

extern const vlm_family vlm_family_llama, vlm_family_llava, vlm_family_llava_next, vlm_family_idefics3,
    vlm_family_moondream2;

static const vlm_family *const families[] = {
    &vlm_family_llama,
    &vlm_family_llava,
    &vlm_family_llava_next,
    &vlm_family_idefics3,
    &vlm_family_moondream2,
};

const vlm_family *vlm_family_find(const char *model_type) {
    if (!model_type) return NULL;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        for (const char *const *t = families[i]->model_types; *t; t++)
            if (!strcmp(*t, model_type)) return families[i];
    return NULL;
}

const char *vlm_family_names(void) { return "llama, mistral, qwen2, llava, llava_next, idefics3, moondream1 (moondream2)"; }
