#include "models/vlm.h"
static const char *const qwen_types[] = {"qwen", NULL};
static vlmc_status qload(vlm_model *m, vlmc_error *err) { (void)m; return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "todo"); }
const vlm_family vlm_family_qwen_vl = {.model_types = qwen_types, .hf_class = "QWenLMHeadModel", .load = qload};
