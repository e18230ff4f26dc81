/* Mirrors transformers 4.47 modeling_rope_utils.py (_compute_default_rope_parameters,
 * _compute_linear_scaling_rope_parameters, _compute_dynamic_ntk_parameters,
 * _compute_llama3_parameters, _compute_yarn_parameters): torch does these in f32 on
 * an f32 arange, so each step here rounds to float where torch does. */
#include "models/rope.h"

#include <math.h>

int rope_dim(const hf_text_config *c) { return (int)(c->head_dim * c->partial_rotary_factor); }

void rope_default_inv_freq(double base, int dim, float *inv) {
    for (int i = 0; i < dim / 2; i++) {
        float e = (float)(2 * i) / (float)dim;
        float p = (float)pow((double)(float)base, (double)e);
        inv[i] = 1.0f / p;
    }
}

vlmc_status rope_inv_freq(const hf_text_config *c, int seq_len, float *inv, float *attention_factor,
                          vlmc_error *err) {
    const int dim = rope_dim(c), half = dim / 2;
    const hf_rope_scaling *rs = &c->rope_scaling;
    double base = c->rope_theta;
    *attention_factor = 1.0f;
    if (dim <= 0 || dim % 2)
        return vlmc_fail(err, VLMC_ERR_FORMAT, "rotary dimension %d (head_dim %d x partial_rotary_factor %g) is not a "
                         "positive even number", dim, c->head_dim, c->partial_rotary_factor);
    switch (rs->type) {
    case ROPE_DEFAULT:
    case ROPE_MROPE: /* Qwen2-VL: default frequencies, positions per section (rope_tables_mrope) */
        rope_default_inv_freq(base, dim, inv);
        return VLMC_OK;
    case ROPE_LINEAR:
        rope_default_inv_freq(base, dim, inv);
        for (int i = 0; i < half; i++) inv[i] = inv[i] / (float)rs->factor;
        return VLMC_OK;
    case ROPE_DYNAMIC: {
        /* base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2)), seq_len >= max_pos */
        const int maxp = c->max_position_embeddings;
        const double f = rs->factor;
        if (seq_len > maxp) {
            /* seq_len is a torch int64 tensor here (max(position_ids) + 1), so every step is f32 */
            float t = (float)f * (float)seq_len;
            t = t / (float)maxp;
            t = t - (float)(f - 1.0);
            t = (float)pow((double)t, (double)(float)((double)dim / (double)(dim - 2)));
            base = (double)((float)base * t);
        } /* else: python ints and floats, base * 1 ** x = base */
        rope_default_inv_freq(base, dim, inv);
        return VLMC_OK;
    }
    case ROPE_LLAMA3: {
        if (rs->original_max_position_embeddings <= 0 || !(rs->high_freq_factor > rs->low_freq_factor))
            return vlmc_fail(err, VLMC_ERR_FORMAT, "llama3 rope_scaling needs original_max_position_embeddings and "
                             "high_freq_factor > low_freq_factor");
        rope_default_inv_freq(base, dim, inv);
        const float factor = (float)rs->factor, lo = (float)rs->low_freq_factor, hi = (float)rs->high_freq_factor;
        const float old_ctx = (float)rs->original_max_position_embeddings;
        const float low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
        for (int i = 0; i < half; i++) {
            float wavelen = (float)(2.0 * M_PI) / inv[i];
            float f = wavelen > low_wavelen ? inv[i] / factor : inv[i];
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old_ctx / wavelen - lo) / (hi - lo);
                f = (1.0f - smooth) * f / factor + smooth * f;
            }
            inv[i] = f;
        }
        return VLMC_OK;
    }
    case ROPE_YARN: {
        const double factor = rs->factor, maxp = c->max_position_embeddings;
        double af = rs->attention_factor >= 0 ? rs->attention_factor : 0.1 * log(factor) + 1.0;
        double beta_fast = rs->beta_fast > 0 ? rs->beta_fast : 32, beta_slow = rs->beta_slow > 0 ? rs->beta_slow : 1;
        /* find_correction_range */
        double lo_d = (dim * log(maxp / (beta_fast * 2 * M_PI))) / (2 * log(base));
        double hi_d = (dim * log(maxp / (beta_slow * 2 * M_PI))) / (2 * log(base));
        double low = floor(lo_d), high = ceil(hi_d);
        if (low < 0) low = 0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001;
        for (int i = 0; i < half; i++) {
            float e = (float)(2 * i) / (float)dim;
            float pos_freq = (float)pow((double)(float)base, (double)e);
            float extrap = 1.0f / pos_freq;
            float interp = 1.0f / ((float)factor * pos_freq);
            float ramp = ((float)i - (float)low) / (float)(high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float ef = 1.0f - ramp; /* inv_freq_extrapolation_factor */
            inv[i] = interp * (1.0f - ef) + extrap * ef;
        }
        *attention_factor = (float)af;
        return VLMC_OK;
    }
    default:
        return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "rope_scaling type %d is not supported by the Llama decoder",
                         (int)rs->type);
    }
}

void rope_tables(const float *inv, int half, float factor, const int32_t *pos, int n, float *cos_t, float *sin_t) {
    for (int p = 0; p < n; p++) {
        float fp = (float)pos[p];
        for (int i = 0; i < half; i++) {
            float ang = fp * inv[i];
            cos_t[(size_t)p * half + i] = (float)cos((double)ang) * factor;
            sin_t[(size_t)p * half + i] = (float)sin((double)ang) * factor;
        }
    }
}

void rope_tables_mrope(const float *inv, int half, float factor, const int section[3], const int32_t *pos3, int n,
                       float *cos_t, float *sin_t) {
    /* apply_multimodal_rotary_pos_emb splits cat(freqs, freqs) into mrope_section * 2 chunks and takes chunk j from
     * axis j % 3: frequency i < half uses axis a with section[0] + .. + section[a-1] <= i < .. + section[a], and its
     * mirror i + half the same axis, so one half-width table per row is enough. */
    for (int p = 0; p < n; p++) {
        int axis = 0, end = section[0];
        for (int i = 0; i < half; i++) {
            while (i >= end && axis < 2) end += section[++axis];
            float ang = (float)pos3[(size_t)p * 3 + axis] * inv[i];
            cos_t[(size_t)p * half + i] = (float)cos((double)ang) * factor;
            sin_t[(size_t)p * half + i] = (float)sin((double)ang) * factor;
        }
    }
}
