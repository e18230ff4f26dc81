/* The model families vlmc runs, found from config.json: families with a detect hook (layouts that share a
 * model_type with another family) are asked first, then model_type decides. Each family file exports its
 * descriptor; adding a family is one line here and one file. */
#include <string.h>

#include "models/vlm.h"

extern const vlm_family vlm_family_llama;
extern const vlm_family vlm_family_llava;
extern const vlm_family vlm_family_llava_next;
extern const vlm_family vlm_family_idefics3;
extern const vlm_family vlm_family_kosmos2;
extern const vlm_family vlm_family_qwen2_vl;
extern const vlm_family vlm_family_paligemma;
extern const vlm_family vlm_family_fuyu;
extern const vlm_family vlm_family_yi_vl;
extern const vlm_family vlm_family_qwen_vl;
extern const vlm_family vlm_family_deepseek_vl;
extern const vlm_family vlm_family_moondream2;

static const vlm_family *const families[] = {
    &vlm_family_yi_vl, /* before llava: same model_type, the original LLaVA layout */
    &vlm_family_llama,
    &vlm_family_llava,
    &vlm_family_llava_next,
    &vlm_family_idefics3,
    &vlm_family_kosmos2,
    &vlm_family_qwen2_vl,
    &vlm_family_paligemma,
    &vlm_family_fuyu,
    &vlm_family_qwen_vl,
    &vlm_family_deepseek_vl,
    &vlm_family_moondream2,
};

const vlm_family *vlm_family_find(const hf_config *cfg) {
    if (!cfg) return NULL;
    enum { N = sizeof families / sizeof families[0] };
    for (size_t i = 0; i < N; i++)
        if (families[i]->detect && families[i]->detect(cfg)) return families[i];
    for (size_t i = 0; i < N; i++)
        for (const char *const *t = families[i]->model_types; *t; t++)
            if (!strcmp(*t, cfg->model_type)) return families[i];
    return NULL;
}

const char *vlm_family_names(void) {
    return "llama, mistral, qwen2, llava, llava_next, idefics3, kosmos-2, qwen2_vl, paligemma, fuyu, "
           "llava (Yi-VL layout), qwen (Qwen-VL), multi_modality (DeepSeek-VL), moondream1 (moondream2)";
}
