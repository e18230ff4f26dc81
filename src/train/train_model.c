/* train_model: parameters, gradients, activations and the top of the forward / backward
 * (see train_model.h). The decoder half is in llama_train.c, the vision half in vision_train.c. */
#include "train/train_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "kernels/train_ops.h"
#include "models/rope.h"
#include "train/train_internal.h"

const char *const tm_linear_names[LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
const char *const tm_linear_modules[LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                  "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                  "mlp.down_proj"};

int tm_stage_from_name(const char *name, tm_stage *out) {
    static const char *names[] = {"full", "projector", "projector+decoder", "lora"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) {
            *out = (tm_stage)i;
            return 0;
        }
    return -1;
}

const char *tm_stage_name(tm_stage s) {
    switch (s) {
    case TM_STAGE_FULL: return "full";
    case TM_STAGE_PROJECTOR: return "projector";
    case TM_STAGE_PROJECTOR_DECODER: return "projector+decoder";
    case TM_STAGE_LORA: return "lora";
    }
    return "?";
}

int tm_lora_targets_parse(const char *s, unsigned *out) {
    unsigned t = 0;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && *p == ' ') p++, n--;
        while (n && p[n - 1] == ' ') n--;
        if (n == 3 && !strncmp(p, "all", 3)) t |= (1u << LIN_COUNT) - 1;
        else {
            int found = -1;
            for (int i = 0; i < LIN_COUNT; i++) {
                size_t ln = strlen(tm_linear_names[i]);
                const char *mod = strchr(tm_linear_modules[i], '.') + 1; /* q_proj ... */
                if ((n == ln && !strncmp(p, tm_linear_names[i], n)) || (n == strlen(mod) && !strncmp(p, mod, n)))
                    found = i;
            }
            if (found < 0) return -1;
            t |= 1u << found;
        }
        if (!e) break;
        p = e + 1;
    }
    if (!t) return -1;
    *out = t;
    return 0;
}

/* ---- parameter registry --------------------------------------------------------------- */

static vlmc_status add_param(train_model *m, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2,
                             int64_t d3, int part, float **wp, float **gp, vlmc_error *err) {
    if (m->n_params == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 64;
        tm_param *np = realloc(m->params, (size_t)cap * sizeof *np);
        if (!np) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the parameter table");
        m->params = np;
        m->cap_params = cap;
    }
    tm_param *p = &m->params[m->n_params++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    p->n = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = d[i];
        p->n *= (size_t)d[i];
    }
    p->offset = m->n_param_floats;
    m->n_param_floats += (p->n + 15) & ~(size_t)15;
    p->part = part;
    p->on_path = true;
    size_t ln = strlen(name);
    p->no_decay = (ln > 5 && !strcmp(name + ln - 5, ".bias")) || strstr(name, "norm") != NULL ||
                  strstr(name, "layrnorm") != NULL;
    p->wp = wp;
    p->gp = gp;
    return VLMC_OK;
}

static vlmc_status register_linear(train_model *m, const char *prefix, tm_linear *w, tm_linear *g, int64_t out,
                                   int64_t in, bool bias, int part, vlmc_error *err) {
    char n[320];
    vlmc_status s;
    snprintf(n, sizeof n, "%s.weight", prefix);
    if ((s = add_param(m, n, 2, out, in, 0, 0, part, &w->w, &g->w, err))) return s;
    if (bias) {
        snprintf(n, sizeof n, "%s.bias", prefix);
        if ((s = add_param(m, n, 1, out, 0, 0, 0, part, &w->b, &g->b, err))) return s;
    }
    return VLMC_OK;
}

static vlmc_status register_decoder(train_model *m, const char *prefix, const char *lm_head, const char *peft_root,
                                    vlmc_error *err) {
    const hf_text_config *c = &m->cfg.text;
    const int64_t D = m->D, QD = (int64_t)m->H * m->hd, KD = (int64_t)m->KVH * m->hd, I = m->I, V = m->V;
    char n[256];
    vlmc_status s;
    snprintf(n, sizeof n, "%sembed_tokens.weight", prefix);
    if ((s = add_param(m, n, 2, V, D, 0, 0, TM_PART_DECODER, &m->w.tok_emb, &m->g.tok_emb, err))) return s;
    m->w.layers = calloc((size_t)m->L, sizeof *m->w.layers);
    m->g.layers = calloc((size_t)m->L, sizeof *m->g.layers);
    if (!m->w.layers || !m->g.layers) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    const int64_t lin_out[LIN_COUNT] = {QD, KD, KD, D, I, I, D}, lin_in[LIN_COUNT] = {D, D, D, QD, D, D, I};
    const bool lin_bias[LIN_COUNT] = {c->qkv_bias, c->qkv_bias, c->qkv_bias, c->o_bias,
                                      c->mlp_bias, c->mlp_bias, c->mlp_bias};
    for (int l = 0; l < m->L; l++) {
        tm_dec_layer *w = &m->w.layers[l], *g = &m->g.layers[l];
        snprintf(n, sizeof n, "%slayers.%d.input_layernorm.weight", prefix, l);
        if ((s = add_param(m, n, 1, D, 0, 0, 0, TM_PART_DECODER, &w->attn_norm, &g->attn_norm, err))) return s;
        for (int j = 0; j < LIN_COUNT; j++) {
            if (j == LIN_GATE) {
                snprintf(n, sizeof n, "%slayers.%d.post_attention_layernorm.weight", prefix, l);
                if ((s = add_param(m, n, 1, D, 0, 0, 0, TM_PART_DECODER, &w->ffn_norm, &g->ffn_norm, err))) return s;
            }
            snprintf(n, sizeof n, "%slayers.%d.%s", prefix, l, tm_linear_modules[j]);
            if ((s = register_linear(m, n, &w->lin[j], &g->lin[j], lin_out[j], lin_in[j], lin_bias[j],
                                     TM_PART_DECODER, err)))
                return s;
            if (m->lora.r > 0 && (m->lora.targets >> j & 1u)) {
                /* PEFT's saved names: base_model.model.<module>.lora_A.weight */
                snprintf(n, sizeof n, "%s%slayers.%d.%s.lora_A.weight", peft_root, prefix, l, tm_linear_modules[j]);
                if ((s = add_param(m, n, 2, m->lora.r, lin_in[j], 0, 0, TM_PART_LORA, &w->lin[j].lora_a,
                                   &g->lin[j].lora_a, err)))
                    return s;
                snprintf(n, sizeof n, "%s%slayers.%d.%s.lora_B.weight", peft_root, prefix, l, tm_linear_modules[j]);
                if ((s = add_param(m, n, 2, lin_out[j], m->lora.r, 0, 0, TM_PART_LORA, &w->lin[j].lora_b,
                                   &g->lin[j].lora_b, err)))
                    return s;
            }
        }
    }
    snprintf(n, sizeof n, "%snorm.weight", prefix);
    if ((s = add_param(m, n, 1, D, 0, 0, 0, TM_PART_DECODER, &m->w.final_norm, &m->g.final_norm, err))) return s;
    if (!m->tied && (s = add_param(m, lm_head, 2, V, D, 0, 0, TM_PART_DECODER, &m->w.lm_head, &m->g.lm_head, err)))
        return s;
    return VLMC_OK;
}

/* The vision tower (CLIP / SigLIP under vision_tower.vision_model., Idefics3 under model.vision_model.), the
 * projector / connector and LLaVA-NeXT's image_newline. Parameters that cannot reach the loss (layers past the
 * selected one; post_layernorm except for Idefics3) are registered with on_path = false. */
static vlmc_status register_vision(train_model *m, vlmc_error *err) {
    const char *P = m->vlm == TM_IDEFICS3 ? "model.vision_model." : "vision_tower.vision_model.";
    const int64_t VD = m->VD, VF = m->VF;
    char n[256];
    vlmc_status s;
    tm_vision *w = &m->vw, *g = &m->vg;
#define ADD(ndim, a, b, c, d, part, field)                                                        \
    if ((s = add_param(m, n, ndim, a, b, c, d, part, &w->field, &g->field, err))) return s
    if (m->cls) {
        snprintf(n, sizeof n, "%sembeddings.class_embedding", P);
        ADD(1, VD, 0, 0, 0, TM_PART_VISION, class_emb);
    }
    snprintf(n, sizeof n, "%sembeddings.patch_embedding.weight", P);
    ADD(4, VD, m->VC, m->VP, m->VP, TM_PART_VISION, patch_w);
    if (!m->cls) {
        snprintf(n, sizeof n, "%sembeddings.patch_embedding.bias", P);
        ADD(1, VD, 0, 0, 0, TM_PART_VISION, patch_b);
    }
    snprintf(n, sizeof n, "%sembeddings.position_embedding.weight", P);
    ADD(2, m->VT, VD, 0, 0, TM_PART_VISION, pos_emb);
    if (m->cls) {
        snprintf(n, sizeof n, "%spre_layrnorm.weight", P);
        ADD(1, VD, 0, 0, 0, TM_PART_VISION, pre_ln_w);
        snprintf(n, sizeof n, "%spre_layrnorm.bias", P);
        ADD(1, VD, 0, 0, 0, TM_PART_VISION, pre_ln_b);
    }
#undef ADD
    w->layers = calloc((size_t)m->VL, sizeof *w->layers);
    g->layers = calloc((size_t)m->VL, sizeof *g->layers);
    if (!w->layers || !g->layers) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (int l = 0; l < m->VL; l++) {
        tm_vis_layer *lw = &w->layers[l], *lg = &g->layers[l];
        const int first = m->n_params;
        struct { const char *name; int ndim; int64_t a, b; float **wp, **gp; } t[] = {
            {"self_attn.k_proj.weight", 2, VD, VD, &lw->k_w, &lg->k_w}, {"self_attn.k_proj.bias", 1, VD, 0, &lw->k_b, &lg->k_b},
            {"self_attn.v_proj.weight", 2, VD, VD, &lw->v_w, &lg->v_w}, {"self_attn.v_proj.bias", 1, VD, 0, &lw->v_b, &lg->v_b},
            {"self_attn.q_proj.weight", 2, VD, VD, &lw->q_w, &lg->q_w}, {"self_attn.q_proj.bias", 1, VD, 0, &lw->q_b, &lg->q_b},
            {"self_attn.out_proj.weight", 2, VD, VD, &lw->o_w, &lg->o_w}, {"self_attn.out_proj.bias", 1, VD, 0, &lw->o_b, &lg->o_b},
            {"layer_norm1.weight", 1, VD, 0, &lw->ln1_w, &lg->ln1_w}, {"layer_norm1.bias", 1, VD, 0, &lw->ln1_b, &lg->ln1_b},
            {"mlp.fc1.weight", 2, VF, VD, &lw->fc1_w, &lg->fc1_w}, {"mlp.fc1.bias", 1, VF, 0, &lw->fc1_b, &lg->fc1_b},
            {"mlp.fc2.weight", 2, VD, VF, &lw->fc2_w, &lg->fc2_w}, {"mlp.fc2.bias", 1, VD, 0, &lw->fc2_b, &lg->fc2_b},
            {"layer_norm2.weight", 1, VD, 0, &lw->ln2_w, &lg->ln2_w}, {"layer_norm2.bias", 1, VD, 0, &lw->ln2_b, &lg->ln2_b},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s", P, l, t[i].name);
            if ((s = add_param(m, n, t[i].ndim, t[i].a, t[i].b, 0, 0, TM_PART_VISION, t[i].wp, t[i].gp, err))) return s;
        }
        if (l >= m->VLR)
            for (int i = first; i < m->n_params; i++) m->params[i].on_path = false;
    }
    snprintf(n, sizeof n, "%spost_layernorm.weight", P);
    if ((s = add_param(m, n, 1, VD, 0, 0, 0, TM_PART_VISION, &w->post_ln_w, &g->post_ln_w, err))) return s;
    m->params[m->n_params - 1].on_path = m->vlm == TM_IDEFICS3;
    snprintf(n, sizeof n, "%spost_layernorm.bias", P);
    if ((s = add_param(m, n, 1, VD, 0, 0, 0, TM_PART_VISION, &w->post_ln_b, &g->post_ln_b, err))) return s;
    m->params[m->n_params - 1].on_path = m->vlm == TM_IDEFICS3;
    const int64_t D = m->D;
    if (m->vlm == TM_IDEFICS3)
        return add_param(m, "model.connector.modality_projection.proj.weight", 2, D, VD * m->scale * m->scale, 0, 0,
                         TM_PART_PROJECTOR, &w->p1_w, &g->p1_w, err);
    if ((s = add_param(m, "multi_modal_projector.linear_1.weight", 2, D, VD, 0, 0, TM_PART_PROJECTOR, &w->p1_w,
                       &g->p1_w, err)) ||
        (s = add_param(m, "multi_modal_projector.linear_1.bias", 1, D, 0, 0, 0, TM_PART_PROJECTOR, &w->p1_b, &g->p1_b,
                       err)) ||
        (s = add_param(m, "multi_modal_projector.linear_2.weight", 2, D, D, 0, 0, TM_PART_PROJECTOR, &w->p2_w,
                       &g->p2_w, err)) ||
        (s = add_param(m, "multi_modal_projector.linear_2.bias", 1, D, 0, 0, 0, TM_PART_PROJECTOR, &w->p2_b, &g->p2_b,
                       err)))
        return s;
    /* LLaVA-NeXT's image_newline belongs with the projector: both only map vision features into the decoder */
    if (m->vlm == TM_LLAVA_NEXT &&
        (s = add_param(m, "image_newline", 1, D, 0, 0, 0, TM_PART_PROJECTOR, &w->newline, &g->newline, err)))
        return s;
    return VLMC_OK;
}

/* ---- load ------------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static vlmc_status load_dims(train_model *m, vlmc_error *err) {
    const hf_config *c = &m->cfg;
    const hf_text_config *t = &c->text;
    const char *mt = c->model_type;
    if (c->original_llava_layout)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: the original LLaVA layout (Yi-VL) cannot be trained yet", m->dir);
    if (!strcmp(mt, "llava")) m->vlm = TM_LLAVA;
    else if (!strcmp(mt, "llava_next")) m->vlm = TM_LLAVA_NEXT;
    else if (!strcmp(mt, "idefics3")) m->vlm = TM_IDEFICS3;
    else if (strcmp(mt, "llama") && strcmp(mt, "mistral") && strcmp(mt, "qwen2"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED,
                         "%s: model_type \"%s\" cannot be trained (llama, mistral, qwen2, llava, llava_next and "
                         "idefics3 can)",
                         m->dir, mt);
    m->is_vlm = m->vlm != TM_TEXT;
    if (strcmp(t->hidden_act, "silu"))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: decoder hidden_act \"%s\" (silu only)", m->dir, t->hidden_act);
    if (t->num_key_value_heads <= 0 || t->num_attention_heads % t->num_key_value_heads)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: heads %d not a multiple of kv heads %d", m->dir,
                         t->num_attention_heads, t->num_key_value_heads);
    m->L = t->num_hidden_layers;
    m->D = t->hidden_size;
    m->H = t->num_attention_heads;
    m->KVH = t->num_key_value_heads;
    m->hd = t->head_dim;
    m->rot = rope_dim(t);
    m->I = t->intermediate_size;
    m->V = t->vocab_size;
    m->eps = (float)t->rms_norm_eps;
    m->tied = t->tie_word_embeddings;
    if (m->L <= 0 || m->D <= 0 || m->hd <= 0 || m->I <= 0 || m->V <= 0 || m->rot <= 0 || m->rot % 2 || m->rot > m->hd)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: invalid decoder dimensions", m->dir);
    m->inv_freq = malloc((size_t)(m->rot / 2) * sizeof(float));
    if (!m->inv_freq) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    vlmc_status s = rope_inv_freq(t, 0, m->inv_freq, &m->attn_factor, err);
    if (s) return s;
    if (!m->is_vlm) return VLMC_OK;
    const hf_vision_config *v = &c->vision;
    if (!strcmp(v->model_type, "clip_vision_model")) m->vkind = VIT_CLIP;
    else if (!strcmp(v->model_type, "siglip_vision_model")) m->vkind = VIT_SIGLIP;
    else if (!strcmp(v->model_type, "idefics3_vision")) m->vkind = VIT_IDEFICS3;
    else
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: vision tower \"%s\" cannot be trained (CLIP, SigLIP and "
                         "Idefics3's can)", m->dir, v->model_type);
    if ((m->vlm == TM_IDEFICS3) != (m->vkind == VIT_IDEFICS3))
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: a %s model with a %s vision tower", m->dir, mt, v->model_type);
    m->cls = m->vkind == VIT_CLIP;
    if (m->vlm != TM_IDEFICS3) {
        if (c->n_vision_feature_layers != 1)
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: training needs one vision_feature_layer", m->dir);
        if (c->multimodal_projector_bias == false)
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: projector without bias is not supported in training",
                             m->dir);
    }
    m->VL = v->num_hidden_layers;
    m->VD = v->hidden_size;
    m->VH = v->num_attention_heads;
    m->VF = v->intermediate_size;
    m->VC = v->num_channels;
    m->VP = v->patch_size;
    m->VS = v->image_size;
    m->veps = (float)v->layer_norm_eps;
    if (m->VL <= 0 || m->VD <= 0 || m->VH <= 0 || m->VD % m->VH || m->VP <= 0 || m->VS % m->VP || m->VC <= 0 ||
        m->VF <= 0)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: invalid vision dimensions", m->dir);
    m->vhd = m->VD / m->VH;
    m->VNP = (m->VS / m->VP) * (m->VS / m->VP);
    m->VT = m->cls + m->VNP;
    m->image_token = c->image_token_index;
    if (m->vlm == TM_IDEFICS3) {
        /* Idefics3Model: last_hidden_state (every layer, post_layernorm) → connector */
        const int side = m->VS / m->VP;
        m->VLR = m->VL;
        m->drop_first = 0;
        m->scale = c->scale_factor;
        if (m->scale <= 0 || side % m->scale)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: scale_factor %d does not divide %d patches per side", m->dir,
                             m->scale, side);
        m->NS = m->VT;
        m->NO = m->VT / (m->scale * m->scale);
        return act_from_name(v->hidden_act, m->dir, &m->vact, err);
    }
    int fl = c->vision_feature_layers[0];
    m->VLR = fl < 0 ? m->VL + 1 + fl : fl;
    if (m->VLR < 0 || m->VLR > m->VL)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: vision_feature_layer %d outside the tower", m->dir, fl);
    if (!strcmp(c->vision_feature_select_strategy, "default")) m->drop_first = 1;
    else if (!strcmp(c->vision_feature_select_strategy, "full")) m->drop_first = 0;
    else
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: vision_feature_select_strategy \"%s\"", m->dir,
                         c->vision_feature_select_strategy);
    m->NS = m->NO = m->VT - m->drop_first;
    if (m->vlm == TM_LLAVA_NEXT) {
        /* the anyres geometry of llava_next_pack (its image_newline is set once the parameters exist) */
        projector *pk = &m->pack;
        memset(pk, 0, sizeof *pk);
        snprintf(pk->file, sizeof pk->file, "%.500s", m->dir);
        pk->kind = PROJ_LLAVA;
        pk->in_dim = m->VD;
        pk->out_dim = m->D;
        pk->tile_size = m->VS;
        pk->tile_patches = m->VS / m->VP;
        pk->n_pinpoints = c->n_image_grid_pinpoints;
        memcpy(pk->pinpoints, c->image_grid_pinpoints, sizeof pk->pinpoints);
        if (pk->n_pinpoints < 1)
            return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: llava_next needs image_grid_pinpoints", m->dir);
        if (m->NS != pk->tile_patches * pk->tile_patches)
            return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: LLaVA-NeXT packing needs strategy \"default\" on a CLS "
                             "tower (%d tokens per tile)", m->dir, m->NS);
    }
    if ((s = act_from_name(v->hidden_act, m->dir, &m->vact, err)) ||
        (s = act_from_name(c->projector_hidden_act, m->dir, &m->pact, err)))
        return s;
    return VLMC_OK;
}

vlmc_status train_model_load(train_model *m, const char *dir, const tm_lora_config *lora, uint64_t seed,
                             vlmc_error *err) {
    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    m->training = true;
    vlmc_status s = hf_config_load(dir, &m->cfg, err);
    if (s) return s;
    if (lora && lora->r > 0) {
        m->lora = *lora;
        m->lora_scale = lora->alpha / (float)lora->r;
        if (lora->dropout < 0 || lora->dropout >= 1)
            return vlmc_fail(err, VLMC_ERR_ARG, "lora dropout %g outside [0, 1)", lora->dropout);
    }
    safetensors *st = NULL;
    if ((s = load_dims(m, err))) goto fail;
    if (m->vlm == TM_IDEFICS3) {
        if ((s = register_vision(m, err)) ||
            (s = register_decoder(m, "model.text_model.", "lm_head.weight", "base_model.model.", err)))
            goto fail;
    } else if (m->is_vlm) {
        if ((s = register_vision(m, err)) ||
            (s = register_decoder(m, "language_model.model.", "language_model.lm_head.weight", "base_model.model.",
                                  err)))
            goto fail;
    } else if ((s = register_decoder(m, "model.", "lm_head.weight", "base_model.model.", err))) {
        goto fail;
    }
    m->param_mem = calloc(m->n_param_floats ? m->n_param_floats : 1, sizeof(float));
    if (!m->param_mem) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "%s: out of memory for %zu parameters", dir, m->n_param_floats);
        goto fail;
    }
    if ((s = safetensors_open(dir, &st, err))) goto fail;
    uint64_t rng = seed ^ 0x6C6F7261ull;
    for (int i = 0; i < m->n_params; i++) {
        tm_param *p = &m->params[i];
        float *dst = m->param_mem + p->offset;
        *p->wp = dst;
        if (p->part == TM_PART_LORA) {
            /* PEFT: A ~ kaiming_uniform(a = sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)); B = 0 */
            if (strstr(p->name, ".lora_A.")) {
                const double bound = 1.0 / sqrt((double)p->shape[1]);
                for (size_t j = 0; j < p->n; j++)
                    dst[j] = (float)(((double)(splitmix64(&rng) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound);
            }
            continue;
        }
        const st_entry *e = safetensors_find(st, p->name);
        if (!e) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor %s is missing", dir, p->name);
            goto fail;
        }
        if ((size_t)tensor_numel(&e->t) != p->n) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: tensor %s has %lld elements, the config wants %zu",
                          safetensors_file_path(st, e->file), p->name, (long long)tensor_numel(&e->t), p->n);
            goto fail;
        }
        if ((s = convert_to_f32(dst, e->t.data, e->t.type, p->n, err))) {
            vlmc_fail_prefix(err, "%s: %s", safetensors_file_path(st, e->file), p->name);
            goto fail;
        }
    }
    if (m->tied) m->w.lm_head = m->w.tok_emb;
    m->pack.image_newline = m->vw.newline;
    safetensors_close(st);
    return VLMC_OK;
fail:
    if (st) safetensors_close(st);
    train_model_free(m);
    return s;
}

void train_model_free(train_model *m) {
    if (m->a) {
        free(m->a->dl);
        free(m->a->vl);
        free(m->a->pos);
        free(m->a->img_row);
        free(m->a->vpos);
        free(m->a->vkeymask);
        free(m->a);
    }
    free(m->act_mem);
    free(m->w.layers);
    free(m->g.layers);
    free(m->vw.layers);
    free(m->vg.layers);
    free(m->params);
    free(m->param_mem);
    free(m->grad_mem);
    free(m->opt_mem);
    free(m->inv_freq);
    memset(m, 0, sizeof *m);
}

tm_param *train_model_find(train_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

/* ---- stage ------------------------------------------------------------------------------ */

vlmc_status train_model_set_stage(train_model *m, tm_stage stage, vlmc_error *err) {
    unsigned parts;
    switch (stage) {
    case TM_STAGE_FULL: parts = TM_PART_VISION | TM_PART_PROJECTOR | TM_PART_DECODER; break;
    case TM_STAGE_PROJECTOR: parts = TM_PART_PROJECTOR; break;
    case TM_STAGE_PROJECTOR_DECODER: parts = TM_PART_PROJECTOR | TM_PART_DECODER; break;
    case TM_STAGE_LORA: parts = TM_PART_LORA; break;
    default: return vlmc_fail(err, VLMC_ERR_ARG, "unknown training stage %d", (int)stage);
    }
    if ((stage == TM_STAGE_PROJECTOR || stage == TM_STAGE_PROJECTOR_DECODER) && !m->is_vlm)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: stage %s needs a VLM (this is a %s model)", m->dir,
                         tm_stage_name(stage), m->cfg.model_type);
    if (stage == TM_STAGE_LORA && m->lora.r <= 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "stage lora: the model was loaded without adapters");
    free(m->grad_mem);
    free(m->opt_mem);
    m->grad_mem = m->opt_mem = NULL;
    m->n_grad_floats = 0;
    for (int i = 0; i < m->n_params; i++) {
        tm_param *p = &m->params[i];
        p->trainable = p->on_path && (parts & (unsigned)p->part);
        *p->gp = NULL;
        if (p->trainable) {
            p->grad_offset = m->n_grad_floats;
            m->n_grad_floats += (p->n + 15) & ~(size_t)15;
        }
    }
    m->grad_mem = calloc(m->n_grad_floats ? m->n_grad_floats : 1, sizeof(float));
    if (!m->grad_mem) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %zu gradients", m->n_grad_floats);
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable) *m->params[i].gp = m->grad_mem + m->params[i].grad_offset;
    if (m->tied) m->g.lm_head = m->g.tok_emb;
    m->trainable_parts = parts;
    m->vision_grads = m->is_vlm && (parts & TM_PART_VISION);
    m->proj_grads = m->is_vlm && (parts & (TM_PART_VISION | TM_PART_PROJECTOR));
    m->dec_grads = true;
    return VLMC_OK;
}

void train_model_zero_grad(train_model *m) {
    if (m->grad_mem) memset(m->grad_mem, 0, m->n_grad_floats * sizeof(float));
}

int train_model_grad_buffers(train_model *m, float **bufs, size_t *sizes, int cap) {
    int n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable) {
            if (n < cap) {
                bufs[n] = m->grad_mem + m->params[i].grad_offset;
                sizes[n] = m->params[i].n;
            }
            n++;
        }
    return n;
}

vlmc_status train_model_adamw_step(train_model *m, int64_t step, float lr, const adamw_params *p,
                                   bool honor_no_decay, vlmc_error *err) {
    if (!m->opt_mem) {
        m->opt_mem = calloc(2 * (m->n_grad_floats ? m->n_grad_floats : 1), sizeof(float));
        if (!m->opt_mem) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for the optimizer state");
    }
    adamw_params nd = *p;
    nd.weight_decay = 0;
    for (int i = 0; i < m->n_params; i++) {
        const tm_param *q = &m->params[i];
        if (!q->trainable) continue;
        float *mm = m->opt_mem + q->grad_offset, *vv = m->opt_mem + m->n_grad_floats + q->grad_offset;
        adamw_update(m->param_mem + q->offset, m->grad_mem + q->grad_offset, mm, vv, q->n, step, lr,
                     honor_no_decay && q->no_decay ? &nd : p);
    }
    return VLMC_OK;
}

vlmc_status train_model_write_grads(const train_model *m, const char *path, vlmc_error *err) {
    int n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].trainable;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    if (!names || !ts) {
        free(names);
        free(ts);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const tm_param *p = &m->params[i];
        if (!p->trainable) continue;
        names[k] = p->name;
        ts[k] = tensor_view(DT_F32, m->grad_mem + p->grad_offset, p->ndim, p->shape);
        k++;
    }
    vlmc_status s = safetensors_write(path, (size_t)n, names, ts, NULL, err);
    free(names);
    free(ts);
    return s;
}

/* ---- activations ------------------------------------------------------------------------ */

typedef struct bump {
    float *base;
    size_t off;
} bump;

static float *take(bump *b, size_t n) {
    float *p = b->base ? b->base + b->off : NULL;
    b->off += (n + 15) & ~(size_t)15;
    return p;
}

static void lay_out(train_model *m, tm_acts *a, bump *b) {
    const size_t B = (size_t)m->B, T = (size_t)m->T, R = B * T, D = (size_t)m->D, QD = (size_t)m->H * m->hd,
                 KD = (size_t)m->KVH * m->hd, I = (size_t)m->I, V = (size_t)m->V, H = (size_t)m->H,
                 half = (size_t)m->rot / 2, r = (size_t)m->lora.r;
    const size_t lin_in[LIN_COUNT] = {D, D, D, QD, D, D, I};
    for (int l = 0; l < m->L; l++) {
        tm_dec_acts *d = &a->dl[l];
        d->res = take(b, R * D);
        d->xn1 = take(b, R * D);
        d->rs1 = take(b, R);
        d->q = take(b, R * QD);
        d->k = take(b, R * KD);
        d->v = take(b, R * KD);
        d->probs = take(b, B * H * T * T);
        d->att = take(b, R * QD);
        d->res2 = take(b, R * D);
        d->xn2 = take(b, R * D);
        d->rs2 = take(b, R);
        d->gate = take(b, R * I);
        d->up = take(b, R * I);
        d->hmid = take(b, R * I);
        for (int j = 0; j < LIN_COUNT; j++) {
            d->lh[j] = d->lx[j] = d->lmask[j] = NULL;
            if (!m->w.layers[l].lin[j].lora_a) continue;
            d->lh[j] = take(b, R * r);
            if (m->lora.dropout > 0) {
                d->lx[j] = take(b, R * lin_in[j]);
                d->lmask[j] = take(b, R * lin_in[j]);
            }
        }
    }
    a->res_final = take(b, R * D);
    a->xnf = take(b, R * D);
    a->rsf = take(b, R);
    a->logits = take(b, R * V);
    a->cos_t = take(b, R * half);
    a->sin_t = take(b, R * half);
    a->embeds = take(b, R * D);
    size_t wide = D > I ? D : I;
    if (QD > wide) wide = QD;
    a->dres = take(b, R * D);
    a->dxn = take(b, R * D);
    a->dq = take(b, R * QD);
    a->dk = take(b, R * KD);
    a->dv = take(b, R * KD);
    a->datt = take(b, R * QD);
    a->dgate = take(b, R * I);
    a->dup = take(b, R * I);
    a->dh = take(b, R * I);
    a->dlin = take(b, R * wide);
    a->dlh = take(b, R * (r ? r : 1));
    if (!m->is_vlm || m->N == 0) return;
    const size_t N = (size_t)m->N, VT = (size_t)m->VT, VR = N * VT, VD = (size_t)m->VD, VF = (size_t)m->VF,
                 NP = (size_t)m->VNP, CPP = (size_t)m->VC * m->VP * m->VP, VH = (size_t)m->VH, NS = (size_t)m->NS,
                 NO = (size_t)m->NO, SD = VD * (size_t)(m->scale * m->scale);
    a->patches = take(b, N * NP * CPP);
    a->pe = take(b, N * NP * VD);
    a->vemb = take(b, VR * VD);
    a->pre_mean = take(b, VR);
    a->pre_rstd = take(b, VR);
    for (int l = 0; l < m->VLR; l++) {
        tm_vis_acts *v = &a->vl[l];
        v->res = take(b, VR * VD);
        v->ln1 = take(b, VR * VD);
        v->m1 = take(b, VR);
        v->r1 = take(b, VR);
        v->q = take(b, VR * VD);
        v->k = take(b, VR * VD);
        v->v = take(b, VR * VD);
        v->probs = take(b, N * VH * VT * VT);
        v->att = take(b, VR * VD);
        v->res2 = take(b, VR * VD);
        v->ln2 = take(b, VR * VD);
        v->m2 = take(b, VR);
        v->r2 = take(b, VR);
        v->fc1 = take(b, VR * VF);
        v->act = take(b, VR * VF);
    }
    a->vfinal = take(b, VR * VD);
    a->feats = take(b, N * NS * VD);
    a->proj = take(b, N * NO * D);
    a->dproj = take(b, N * NO * D);
    a->ph1 = a->pa1 = a->dpa1 = a->shuf = a->dshuf = a->post_mean = a->post_rstd = a->packed = a->dimg = NULL;
    if (m->vlm == TM_IDEFICS3) {
        a->post_mean = take(b, VR);
        a->post_rstd = take(b, VR);
        a->shuf = take(b, N * NO * SD);
        a->dshuf = take(b, N * NO * SD);
    } else {
        a->ph1 = take(b, N * NS * D);
        a->pa1 = take(b, N * NS * D);
        a->dpa1 = take(b, N * NS * D);
    }
    if (m->vlm == TM_LLAVA_NEXT) {
        /* packed rows per image <= tiles·NS + (tiles - 1)·side (an image_newline after each grid row) */
        const size_t rows = N * (NS + (size_t)(m->VS / m->VP));
        a->packed = take(b, rows * D);
        a->dimg = take(b, rows * D);
    }
    a->img = a->packed ? a->packed : a->proj;
    if (!a->dimg) a->dimg = a->dproj;
    a->dvres = take(b, VR * VD);
    a->dvln = take(b, VR * VD);
    a->dvq = take(b, VR * VD);
    a->dvk = take(b, VR * VD);
    a->dvv = take(b, VR * VD);
    a->dvatt = take(b, VR * VD);
    a->dvfc = take(b, VR * VF);
    a->dpe = take(b, N * NP * VD);
}

vlmc_status train_model_plan(train_model *m, int B, int T, int n_images, vlmc_error *err) {
    if (B <= 0 || T <= 0 || n_images < 0 || (n_images > 0 && !m->is_vlm) || (int64_t)B * T > (1 << 24) ||
        n_images > (1 << 16))
        return vlmc_fail(err, VLMC_ERR_ARG, "training plan: invalid B %d, T %d, images %d", B, T, n_images);
    if (m->cfg.text.sliding_window > 0 && T > m->cfg.text.sliding_window)
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: training sequences longer than the sliding window (%d)",
                         m->dir, m->cfg.text.sliding_window);
    if (!m->a) {
        m->a = calloc(1, sizeof *m->a);
        if (!m->a) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        m->a->dl = calloc((size_t)m->L, sizeof *m->a->dl);
        m->a->vl = calloc((size_t)(m->VLR > 0 ? m->VLR : 1), sizeof *m->a->vl);
        if (!m->a->dl || !m->a->vl) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    m->B = B;
    m->T = T;
    m->N = n_images;
    bump b = {NULL, 0};
    lay_out(m, m->a, &b);
    if (b.off > m->n_act_floats) {
        free(m->act_mem);
        m->act_mem = malloc(b.off * sizeof(float));
        if (!m->act_mem) {
            m->n_act_floats = 0;
            return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %zu activation floats (B %d, T %d)", b.off, B, T);
        }
        m->n_act_floats = b.off;
    }
    free(m->a->pos);
    free(m->a->img_row);
    free(m->a->vpos);
    free(m->a->vkeymask);
    m->a->pos = malloc((size_t)B * T * sizeof(int32_t));
    m->a->img_row = calloc((size_t)B * T, 1);
    m->a->vpos = malloc(((size_t)n_images * m->VNP + 1) * sizeof(int32_t));
    m->a->vkeymask = malloc(((size_t)n_images * m->VT + 1) * sizeof(int32_t));
    if (!m->a->pos || !m->a->img_row || !m->a->vpos || !m->a->vkeymask)
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    b.base = m->act_mem;
    b.off = 0;
    lay_out(m, m->a, &b);
    return VLMC_OK;
}

/* ---- forward / backward ------------------------------------------------------------------ */

const float *train_model_logits(const train_model *m) { return m->a ? m->a->logits : NULL; }
int64_t train_model_n_targets(const train_model *m) { return m->n_targets; }

/* The feature rows the batch's images give (m->n_img_rows), checking the LLaVA-NeXT image geometry. */
static vlmc_status image_rows(train_model *m, const train_batch *bt, vlmc_error *err) {
    m->n_img_rows = 0;
    m->n_groups = 0;
    m->img_tiles = NULL;
    m->img_sizes = NULL;
    if (m->N > 0 && !bt->pixel_values) return vlmc_fail(err, VLMC_ERR_ARG, "training batch: %d tiles but no pixels", m->N);
    if (m->vlm != TM_LLAVA_NEXT) {
        m->n_img_rows = m->N * m->NO;
        return VLMC_OK;
    }
    if (m->N == 0) return VLMC_OK;
    if (bt->n_groups <= 0 || !bt->image_tiles || !bt->image_sizes)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: llava_next training needs the tiles and image_sizes of each image",
                         m->dir);
    int64_t tiles = 0, rows = 0;
    for (int g = 0; g < bt->n_groups; g++) {
        const int h = bt->image_sizes[2 * g], w = bt->image_sizes[2 * g + 1];
        int want = 0;
        size_t len = 0;
        vlmc_status s = llava_next_num_tiles(&m->pack, h, w, &want, err);
        if (s) return s;
        if (bt->image_tiles[g] != want)
            return vlmc_fail(err, VLMC_ERR_ARG, "%s: image %d of size %dx%d needs %d tiles, the batch has %d", m->dir, g,
                             h, w, want, bt->image_tiles[g]);
        if ((s = llava_next_packed_len(&m->pack, want, m->NS, h, w, &len, err))) return s;
        tiles += want;
        rows += (int64_t)len;
    }
    if (tiles != m->N)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: the images have %lld tiles, the batch %d", m->dir, (long long)tiles,
                         m->N);
    m->n_img_rows = (int)rows;
    m->n_groups = bt->n_groups;
    m->img_tiles = bt->image_tiles;
    m->img_sizes = bt->image_sizes;
    return VLMC_OK;
}

/* Rows of the position table for every patch, and the key mask of padded patches: arange for CLIP / SigLIP;
 * Idefics3VisionEmbeddings' bucketized ids from the pixel_attention_mask (padded patches: id 0, masked as keys). */
static vlmc_status vision_positions(train_model *m, const train_batch *bt, vlmc_error *err) {
    tm_acts *a = m->a;
    const int N = m->N, NP = m->VNP, gs = m->VS / m->VP;
    a->vmasked = 0;
    for (int64_t i = 0; i < (int64_t)N * m->VT; i++) a->vkeymask[i] = 1;
    if (m->vlm != TM_IDEFICS3) {
        for (int n = 0; n < N; n++)
            for (int p = 0; p < NP; p++) a->vpos[(int64_t)n * NP + p] = m->cls + p;
        return VLMC_OK;
    }
    vit_model geo;
    memset(&geo, 0, sizeof geo);
    geo.side = gs;
    snprintf(geo.file, sizeof geo.file, "%.500s", m->dir);
    uint8_t *pm8 = NULL, *patch = NULL;
    int *pos = malloc((size_t)NP * sizeof(int));
    if (bt->pixel_mask) {
        pm8 = malloc((size_t)m->VS * m->VS);
        patch = malloc((size_t)NP);
    }
    vlmc_status s = VLMC_OK;
    if (!pos || (bt->pixel_mask && (!pm8 || !patch))) s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    for (int n = 0; n < N && !s; n++) {
        if (bt->pixel_mask) {
            const int32_t *pm = bt->pixel_mask + (int64_t)n * m->VS * m->VS;
            for (int64_t i = 0; i < (int64_t)m->VS * m->VS; i++) pm8[i] = pm[i] != 0;
            vit_patch_mask_from_pixels(pm8, 1, m->VS, m->VS, m->VP, patch);
        }
        if ((s = vit_idefics3_position_ids(&geo, patch, gs, gs, pos, n, err))) break;
        for (int p = 0; p < NP; p++) {
            a->vpos[(int64_t)n * NP + p] = pos[p];
            if (patch && !patch[p]) {
                a->vkeymask[(int64_t)n * m->VT + p] = 0;
                a->vmasked = 1;
            }
        }
    }
    free(pos);
    free(pm8);
    free(patch);
    return s;
}

vlmc_status train_model_forward(train_model *m, const train_batch *bt, float *loss, vlmc_error *err) {
    if (!m->a || bt->B != m->B || bt->T != m->T || bt->n_images != m->N)
        return vlmc_fail(err, VLMC_ERR_ARG, "training batch (B %d, T %d, %d images) does not match the plan", bt->B,
                         bt->T, bt->n_images);
    tm_acts *a = m->a;
    const int64_t R = (int64_t)m->B * m->T, D = m->D;
    int n_img_tokens = 0;
    for (int64_t r = 0; r < R; r++) {
        const int32_t id = bt->input_ids[r];
        if (id < 0 || id >= m->V)
            return vlmc_fail(err, VLMC_ERR_ARG, "token id %d at position %lld is outside the vocabulary (%d)", id,
                             (long long)r, m->V);
        a->img_row[r] = m->is_vlm && id == m->image_token;
        n_img_tokens += a->img_row[r];
        if (bt->labels && bt->labels[r] != -100 && (bt->labels[r] < 0 || bt->labels[r] >= m->V))
            return vlmc_fail(err, VLMC_ERR_ARG, "label %d at position %lld is neither -100 nor a token id (< %d)",
                             bt->labels[r], (long long)r, m->V);
    }
    if (m->is_vlm) {
        vlmc_status s = image_rows(m, bt, err);
        if (s) return s;
        if (n_img_tokens != m->n_img_rows)
            return vlmc_fail(err, VLMC_ERR_ARG,
                             "Image features and image tokens do not match: tokens: %d, features %d", n_img_tokens,
                             m->n_img_rows);
        if (m->N > 0 && (s = vision_positions(m, bt, err))) return s;
    }
    m->ids = bt->input_ids;
    m->mask = bt->attention_mask;
    m->labels = bt->labels;
    /* positions: arange(T) unless given; dynamic rope grows past max_position_embeddings */
    int max_pos = 0;
    vlmc_status s;
    for (int b = 0; b < m->B; b++)
        for (int t = 0; t < m->T; t++) {
            int p = bt->position_ids ? bt->position_ids[(int64_t)b * m->T + t] : t;
            a->pos[(int64_t)b * m->T + t] = p;
            if (p > max_pos) max_pos = p;
        }
    if (m->cfg.text.rope_scaling.type == ROPE_DYNAMIC) {
        s = rope_inv_freq(&m->cfg.text, max_pos + 1 > m->cfg.text.max_position_embeddings ? max_pos + 1 : 0,
                          m->inv_freq, &m->attn_factor, err);
        if (s) return s;
    }
    rope_tables(m->inv_freq, m->rot / 2, m->attn_factor, a->pos, (int)R, a->cos_t, a->sin_t);

    const float *embeds = NULL;
    if (m->is_vlm && m->N > 0) {
        if ((s = tm_vision_forward(m, bt->pixel_values, err))) return s;
        embedding_forward(a->embeds, bt->input_ids, m->w.tok_emb, R, D);
        int64_t k = 0;
        for (int64_t r = 0; r < R; r++)
            if (a->img_row[r]) memcpy(a->embeds + r * D, a->img + (k++) * D, (size_t)D * sizeof(float));
        embeds = a->embeds;
    }
    tm_decoder_forward(m, embeds);
    m->n_targets = 0;
    m->loss = 0;
    if (bt->labels) {
        double sum = cross_entropy_forward(a->logits, bt->labels, m->B, m->T, m->V, &m->n_targets);
        m->loss = m->n_targets ? (float)(sum / (double)m->n_targets) : 0.0f;
    }
    if (loss) *loss = m->loss;
    return VLMC_OK;
}

vlmc_status train_model_backward(train_model *m, float dloss, vlmc_error *err) {
    if (!m->labels) return vlmc_fail(err, VLMC_ERR_ARG, "backward without labels");
    if (!m->grad_mem) return vlmc_fail(err, VLMC_ERR_ARG, "backward before train_model_set_stage");
    tm_acts *a = m->a;
    const float scale = m->n_targets ? dloss / (float)m->n_targets : 0.0f;
    cross_entropy_backward(a->logits, a->logits, m->labels, m->B, m->T, m->V, scale);
    const bool want_embeds = m->is_vlm && m->N > 0 && m->proj_grads;
    tm_decoder_backward(m, want_embeds ? a->embeds : NULL);
    if (want_embeds) {
        const int64_t R = (int64_t)m->B * m->T, D = m->D;
        int64_t k = 0;
        for (int64_t r = 0; r < R; r++)
            if (a->img_row[r]) memcpy(a->dimg + (k++) * D, a->embeds + r * D, (size_t)D * sizeof(float));
        vlmc_status s = tm_vision_backward(m, err);
        if (s) return s;
    }
    return VLMC_OK;
}
