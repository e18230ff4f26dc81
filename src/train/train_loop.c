/* vlmc_train: the optimisation loop (Hugging Face Trainer semantics, see vlmc.h), checkpoints with exact
 * resume, metrics.jsonl, the progress line and loss.svg; and vlmc_compute_grads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "core/file.h"
#include "formats/arrays.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "train/optim.h"
#include "train/trainer.h"

void vlmc_train_params_default(vlmc_train_params *p) {
    memset(p, 0, sizeof *p);
    p->epochs = 1;
    p->batch_size = 1;
    p->grad_accum = 1;
    p->max_grad_norm = 1.0;
    p->seed = 42;
    p->lora_r = 8;
    p->lora_alpha = 16;
    p->lora_dropout = 0.05;
    p->max_length = 2048;
}

typedef struct trainer {
    vlmc_train_params p;
    tm_stage stage;
    lr_schedule sched;
    train_model m;
    vlmc_tokenizer *tok;
    chat_template *ct;
    vlmc_image_processor *proc;
    conv_dataset data, eval_data;
    tr_example *ex, *eval_ex;
    size_t n_ex, n_eval;
    int32_t pad_id;
    int64_t micro_per_epoch, steps_per_epoch, total_steps;
    int64_t *perm;            /* this epoch's order of examples */
    int64_t perm_epoch;
    /* batch buffers */
    int32_t *ids, *mask, *labels;
    float *pixels;
    size_t cap_tokens, cap_pixels;
    int32_t *pmask;           /* Idefics3 pixel_attention_mask of every tile */
    size_t cap_pmask;
    int *img_tiles;           /* LLaVA-NeXT: tiles and original size of each image */
    int32_t *img_sizes;
    int cap_imgs;
    /* curve */
    double *curve;
    double *eval_curve_step, *eval_curve;
    int n_eval_points;
    FILE *metrics;
} trainer;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Seeded Fisher–Yates shuffle of epoch e: a function of (seed, e) only, so a resumed run sees the same
 * order. */
static void epoch_order(trainer *tr, int64_t e) {
    if (tr->perm_epoch == e) return;
    for (size_t i = 0; i < tr->n_ex; i++) tr->perm[i] = (int64_t)i;
    uint64_t st = mix64(tr->p.seed ^ mix64((uint64_t)e + 1));
    for (size_t i = tr->n_ex; i > 1; i--) {
        st = mix64(st);
        size_t j = (size_t)(st % i);
        int64_t t = tr->perm[i - 1];
        tr->perm[i - 1] = tr->perm[j];
        tr->perm[j] = t;
    }
    tr->perm_epoch = e;
}

/* Grows *buf (elements of size esz) to hold need; false when out of memory. */
static bool reserve(void **buf, size_t *cap, size_t need, size_t esz) {
    if (need <= *cap) return true;
    void *p = realloc(*buf, need * esz);
    if (!p) return false;
    *buf = p;
    *cap = need;
    return true;
}

/* The images of the batch (N of them), preprocessed: every tile's pixels, and per family the image geometry
 * (LLaVA-NeXT: tiles and original size per image; Idefics3: the pixel_attention_mask of every tile). */
static vlmc_status batch_pixels(trainer *tr, tr_example *const *exs, int nb, int N, train_batch *bt, vlmc_error *err) {
    const train_model *m = &tr->m;
    const size_t per = (size_t)m->VC * m->VS * m->VS, plane = (size_t)m->VS * m->VS;
    if (N > tr->cap_imgs) {
        int *t = realloc(tr->img_tiles, (size_t)N * sizeof *t);
        if (t) tr->img_tiles = t;
        int32_t *z = t ? realloc(tr->img_sizes, 2 * (size_t)N * sizeof *z) : NULL;
        if (!z) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %d images", N);
        tr->img_sizes = z;
        tr->cap_imgs = N;
    }
    int k = 0, tiles = 0;
    vlmc_status s = VLMC_OK;
    for (int i = 0; i < nb && !s; i++)
        for (int j = 0; j < exs[i]->n_images && !s; j++, k++) {
            vlmc_image *im = NULL;
            vlmc_preprocessed pp;
            memset(&pp, 0, sizeof pp);
            const char *path = exs[i]->images[j];
            if ((s = vlmc_image_load_file(path, NULL, &im, err))) return s;
            s = vlmc_preprocess(tr->proc, im, &pp, err);
            vlmc_image_free(im);
            if (s) return s;
            const int nd = pp.ndim, nt = nd == 5 ? (int)pp.shape[1] : 1;
            if ((nd != 4 && nd != 5) || pp.shape[0] != 1 || pp.shape[nd - 3] != m->VC || pp.shape[nd - 2] != m->VS ||
                pp.shape[nd - 1] != m->VS || (m->vlm == TM_LLAVA && nt != 1)) {
                vlmc_preprocessed_free(&pp);
                return vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: the processor's output is not %s%dx%d tiles", path,
                                 m->vlm == TM_LLAVA ? "one " : "", m->VS, m->VS);
            }
            if (!reserve((void **)&tr->pixels, &tr->cap_pixels, (size_t)(tiles + nt) * per, sizeof(float)) ||
                (m->vlm == TM_IDEFICS3 &&
                 !reserve((void **)&tr->pmask, &tr->cap_pmask, (size_t)(tiles + nt) * plane, sizeof(int32_t)))) {
                vlmc_preprocessed_free(&pp);
                return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for %d tiles", tiles + nt);
            }
            memcpy(tr->pixels + (size_t)tiles * per, pp.pixel_values, (size_t)nt * per * sizeof(float));
            if (m->vlm == TM_IDEFICS3)
                for (size_t q = 0; q < (size_t)nt * plane; q++)
                    tr->pmask[(size_t)tiles * plane + q] = pp.pixel_attention_mask ? pp.pixel_attention_mask[q] : 1;
            tr->img_tiles[k] = nt;
            tr->img_sizes[2 * k] = pp.has_image_sizes ? pp.image_sizes[0] : m->VS;
            tr->img_sizes[2 * k + 1] = pp.has_image_sizes ? pp.image_sizes[1] : m->VS;
            tiles += nt;
            vlmc_preprocessed_free(&pp);
        }
    bt->pixel_values = tr->pixels;
    bt->n_images = tiles;
    if (m->vlm == TM_LLAVA_NEXT) {
        bt->n_groups = N;
        bt->image_tiles = tr->img_tiles;
        bt->image_sizes = tr->img_sizes;
    }
    if (m->vlm == TM_IDEFICS3) bt->pixel_mask = tr->pmask;
    return s;
}

/* Builds the batch of examples idx[0..nb) (right padding) and runs forward (and backward with dloss). */
static vlmc_status run_batch(trainer *tr, tr_example *const *exs, int nb, bool backward, float dloss, float *loss,
                             int64_t *tokens, vlmc_error *err) {
    int T = 0, N = 0;
    for (int i = 0; i < nb; i++) {
        if (exs[i]->n > T) T = exs[i]->n;
        N += exs[i]->n_images;
    }
    if (T < 2) T = 2;
    const size_t need = (size_t)nb * T;
    if (need > tr->cap_tokens) {
        free(tr->ids), free(tr->mask), free(tr->labels);
        tr->ids = malloc(need * sizeof(int32_t));
        tr->mask = malloc(need * sizeof(int32_t));
        tr->labels = malloc(need * sizeof(int32_t));
        tr->cap_tokens = need;
        if (!tr->ids || !tr->mask || !tr->labels) {
            tr->cap_tokens = 0;
            return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory for a batch of %d x %d", nb, T);
        }
    }
    int64_t tok = 0;
    for (int i = 0; i < nb; i++)
        for (int t = 0; t < T; t++) {
            const size_t r = (size_t)i * T + t;
            const bool real = t < exs[i]->n;
            tr->ids[r] = real ? exs[i]->ids[t] : tr->pad_id;
            tr->mask[r] = real;
            tr->labels[r] = real ? exs[i]->labels[t] : -100;
            tok += real;
        }
    vlmc_status s;
    train_batch bt = {.B = nb, .T = T, .input_ids = tr->ids, .attention_mask = tr->mask, .labels = tr->labels};
    if (N > 0 && (s = batch_pixels(tr, exs, nb, N, &bt, err))) return s;
    if ((s = train_model_plan(&tr->m, nb, T, bt.n_images, err))) return s;
    if ((s = train_model_forward(&tr->m, &bt, loss, err))) return s;
    if (backward && (s = train_model_backward(&tr->m, dloss, err))) return s;
    if (tokens) *tokens = tok;
    return VLMC_OK;
}

static vlmc_status evaluate(trainer *tr, double *eval_loss, vlmc_error *err) {
    tr->m.training = false;
    double sum = 0;
    int64_t n = 0;
    vlmc_status s = VLMC_OK;
    for (size_t i = 0; i < tr->n_eval && !s; i += (size_t)tr->p.batch_size) {
        tr_example *b[256];
        int nb = 0;
        for (size_t j = i; j < tr->n_eval && nb < tr->p.batch_size; j++) b[nb++] = &tr->eval_ex[j];
        float l = 0;
        s = run_batch(tr, b, nb, false, 0, &l, NULL, err);
        sum += (double)l * (double)train_model_n_targets(&tr->m);
        n += train_model_n_targets(&tr->m);
    }
    tr->m.training = true;
    *eval_loss = n ? sum / (double)n : 0;
    return s;
}

/* ---- checkpoints --------------------------------------------------------------------------------- */

static vlmc_status save_checkpoint(trainer *tr, int64_t step, vlmc_error *err) {
    char dir[1200], path[1300];
    snprintf(dir, sizeof dir, "%s/checkpoint-%lld", tr->p.out_dir, (long long)step);
    vlmc_status s = file_mkdirs(dir, err);
    if (s) return s;
    train_model *m = &tr->m;
    int n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].trainable;
    const char **names = calloc((size_t)(2 * n) + 1, sizeof *names);
    char (*onames)[280] = calloc((size_t)(2 * n) + 1, sizeof *onames);
    tensor *ts = calloc((size_t)(2 * n) + 1, sizeof *ts);
    if (!names || !onames || !ts) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto out;
    }
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const tm_param *p = &m->params[i];
        if (!p->trainable) continue;
        names[k] = p->name;
        ts[k++] = tensor_view(DT_F32, tm_param_data(m, p), p->ndim, p->shape);
    }
    snprintf(path, sizeof path, "%s/trainable.safetensors", dir);
    if ((s = safetensors_write(path, (size_t)n, names, ts, NULL, err))) goto out;
    if (m->opt_mem) {
        k = 0;
        for (int i = 0; i < m->n_params; i++) {
            const tm_param *p = &m->params[i];
            if (!p->trainable) continue;
            snprintf(onames[k], sizeof onames[k], "%s.exp_avg", p->name);
            names[k] = onames[k];
            ts[k++] = tensor_view(DT_F32, m->opt_mem + p->grad_offset, p->ndim, p->shape);
            snprintf(onames[k], sizeof onames[k], "%s.exp_avg_sq", p->name);
            names[k] = onames[k];
            ts[k++] = tensor_view(DT_F32, m->opt_mem + m->n_grad_floats + p->grad_offset, p->ndim, p->shape);
        }
        snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
        if ((s = safetensors_write(path, (size_t)k, names, ts, NULL, err))) goto out;
    }
    /* the data position and RNG are functions of (seed, step): shuffles per epoch, dropout per micro-batch */
    char state[1024];
    int len = snprintf(state, sizeof state,
                       "{\n  \"global_step\": %lld,\n  \"epoch\": %.6f,\n  \"total_steps\": %lld,\n  \"seed\": %llu,\n"
                       "  \"stage\": \"%s\",\n  \"n_examples\": %zu,\n  \"batch_size\": %d,\n  \"grad_accum\": %d\n}\n",
                       (long long)step, (double)step / (double)tr->steps_per_epoch, (long long)tr->total_steps,
                       (unsigned long long)tr->p.seed, tm_stage_name(tr->stage), tr->n_ex, tr->p.batch_size,
                       tr->p.grad_accum);
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    s = file_write_all(path, state, (size_t)len, err);
out:
    free(names);
    free(onames);
    free(ts);
    return s;
}

static vlmc_status load_checkpoint(trainer *tr, const char *dir, int64_t *step, vlmc_error *err) {
    char path[1300];
    cJSON *st = NULL;
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    vlmc_status s = json_parse_file(path, 1 << 20, &st, err);
    if (s) return s;
    *step = json_int(st, "global_step", -1);
    const char *stage = json_string(st, "stage", "");
    bool ok = *step >= 0 && !strcmp(stage, tm_stage_name(tr->stage)) &&
              (uint64_t)json_number(st, "seed", -1) == tr->p.seed && json_int(st, "n_examples", -1) == (int64_t)tr->n_ex &&
              json_int(st, "batch_size", -1) == tr->p.batch_size && json_int(st, "grad_accum", -1) == tr->p.grad_accum;
    cJSON_Delete(st);
    if (!ok)
        return vlmc_fail(err, VLMC_ERR_ARG,
                         "%s: the checkpoint was made with another stage, seed, dataset size, batch size or "
                         "accumulation; an exact resume needs the same",
                         path);
    train_model *m = &tr->m;
    safetensors *w = NULL, *o = NULL;
    snprintf(path, sizeof path, "%s/trainable.safetensors", dir);
    if ((s = safetensors_open(path, &w, err))) return s;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (file_exists(path) && (s = safetensors_open(path, &o, err))) goto out;
    if (o && !m->opt_mem) {
        m->opt_mem = calloc(2 * (m->n_grad_floats ? m->n_grad_floats : 1), sizeof(float));
        if (!m->opt_mem) {
            s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    for (int i = 0; i < m->n_params && !s; i++) {
        const tm_param *p = &m->params[i];
        if (!p->trainable) continue;
        char name[300];
        const st_entry *e = safetensors_find(w, p->name);
        if (!e || e->t.type != DT_F32 || (size_t)tensor_numel(&e->t) != p->n) {
            s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s/trainable.safetensors: %s missing or misshaped", dir, p->name);
            break;
        }
        memcpy(tm_param_data(m, p), e->t.data, p->n * sizeof(float));
        if (!o) continue;
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%s.%s", p->name, k ? "exp_avg_sq" : "exp_avg");
            e = safetensors_find(o, name);
            if (!e || e->t.type != DT_F32 || (size_t)tensor_numel(&e->t) != p->n) {
                s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s/optimizer.safetensors: %s missing or misshaped", dir, name);
                break;
            }
            memcpy(m->opt_mem + (k ? m->n_grad_floats : 0) + p->grad_offset, e->t.data, p->n * sizeof(float));
        }
    }
out:
    if (w) safetensors_close(w);
    if (o) safetensors_close(o);
    return s;
}

/* ---- reporting ----------------------------------------------------------------------------------- */

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

static void write_svg(trainer *tr, int64_t n_steps, vlmc_error *err) {
    char path[1200];
    snprintf(path, sizeof path, "%s/loss.svg", tr->p.out_dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        vlmc_fail(err, VLMC_ERR_IO, "%s: cannot write", path);
        return;
    }
    double mx = 0;
    for (int64_t i = 0; i < n_steps; i++)
        if (isfinite(tr->curve[i]) && tr->curve[i] > mx) mx = tr->curve[i];
    for (int i = 0; i < tr->n_eval_points; i++)
        if (tr->eval_curve[i] > mx) mx = tr->eval_curve[i];
    if (mx <= 0) mx = 1;
    const double W = 640, H = 360, x0 = 50, y0 = 20, pw = 570, ph = 300;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" "
               "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<path d=\"M%g %g V%g H%g\" stroke=\"black\" fill=\"none\"/>\n", x0, y0, y0 + ph, x0 + pw);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.3g</text>\n", x0 - 4, y0 + 4, mx);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">0</text>\n", x0 - 4, y0 + ph);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">step %lld</text>\n", x0 + pw, y0 + ph + 16,
            (long long)n_steps);
    fprintf(f, "<text x=\"%g\" y=\"%g\">training loss%s</text>\n", x0 + 8, y0 + 12,
            tr->n_eval_points ? " (blue), eval loss (red)" : "");
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    for (int64_t i = 0; i < n_steps; i++) {
        double x = x0 + pw * (n_steps > 1 ? (double)i / (double)(n_steps - 1) : 0.5);
        double v = isfinite(tr->curve[i]) ? tr->curve[i] : mx;
        fprintf(f, "%.1f,%.1f ", x, y0 + ph * (1 - v / mx));
    }
    fprintf(f, "\"/>\n");
    for (int i = 0; i < tr->n_eval_points; i++) {
        double x = x0 + pw * (n_steps > 1 ? (tr->eval_curve_step[i] - 1) / (double)(n_steps - 1) : 0.5);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"/>\n", x,
                y0 + ph * (1 - tr->eval_curve[i] / mx));
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

/* ---- setup ----------------------------------------------------------------------------------------- */

static vlmc_status load_examples(trainer *tr, const char *path, conv_dataset *d, tr_example **out, size_t *n,
                                 vlmc_error *err) {
    vlmc_status s = conv_dataset_load(path, tr->p.image_root, d, err);
    if (s) return s;
    if (d->n == 0) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no examples", path);
    *out = calloc(d->n, sizeof **out);
    if (!*out) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    tr_text_opts o = {.train_on_prompt = tr->p.train_on_prompt != 0, .content_as_string = !tr->m.is_vlm,
                      .max_length = tr->p.max_length, .image_token = tr->m.is_vlm ? tr->m.image_token : -1,
                      .image_tokens = tr->m.is_vlm ? tr->m.NO : 0};
    for (size_t i = 0; i < d->n; i++) {
        const conv_sample *smp = &d->samples[i];
        tr_image_ids *x = NULL;
        int nx = 0;
        if (tr->m.vlm == TM_LLAVA_NEXT || tr->m.vlm == TM_IDEFICS3) {
            /* the processor decides each image's tokens: expand it as the family's processor does */
            x = calloc((size_t)smp->n_images + 1, sizeof *x);
            if (!x) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
            for (; nx < smp->n_images && !s; nx++) s = tr_image_expansion(&tr->m, tr->proc, tr->tok, smp->images[nx], &x[nx], err);
            if (s) vlmc_fail_prefix(err, "%s: row %d", path, smp->source_line);
        }
        o.expansions = x;
        if (!s && (s = tr_build_example(smp, tr->ct, tr->tok, &o, &(*out)[i], err))) vlmc_fail_prefix(err, "%s", path);
        for (int k = 0; k < nx; k++) free(x[k].ids);
        free(x);
        if (s) return s;
        *n = i + 1;
        for (int t = 0; t < (*out)[i].n; t++)
            if ((*out)[i].ids[t] < 0 || (*out)[i].ids[t] >= tr->m.V)
                return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: row %d: token id %d is outside the model's vocabulary (%d)",
                                 path, smp->source_line, (*out)[i].ids[t], tr->m.V);
    }
    return VLMC_OK;
}

static void trainer_free(trainer *tr) {
    for (size_t i = 0; i < tr->n_ex; i++) tr_example_free(&tr->ex[i]);
    for (size_t i = 0; i < tr->n_eval; i++) tr_example_free(&tr->eval_ex[i]);
    free(tr->ex);
    free(tr->eval_ex);
    conv_dataset_free(&tr->data);
    conv_dataset_free(&tr->eval_data);
    train_model_free(&tr->m);
    if (tr->tok) vlmc_tokenizer_free(tr->tok);
    if (tr->ct) chat_template_free(tr->ct);
    if (tr->proc) vlmc_image_processor_free(tr->proc);
    free(tr->perm);
    free(tr->ids), free(tr->mask), free(tr->labels), free(tr->pixels);
    free(tr->pmask), free(tr->img_tiles), free(tr->img_sizes);
    free(tr->curve), free(tr->eval_curve), free(tr->eval_curve_step);
    if (tr->metrics) fclose(tr->metrics);
}

vlmc_status vlmc_train(const vlmc_train_params *params, vlmc_train_callback cb, void *ud, vlmc_error *err) {
    trainer tr_s, *tr = &tr_s;
    memset(tr, 0, sizeof *tr);
    tr->perm_epoch = -1;
    if (!params || !params->model_dir || !params->data_path || !params->out_dir)
        return vlmc_fail(err, VLMC_ERR_ARG, "vlmc_train: model_dir, data_path and out_dir are required");
    tr->p = *params;
    vlmc_train_params *p = &tr->p;
    if (tm_stage_from_name(p->stage ? p->stage : "full", &tr->stage))
        return vlmc_fail(err, VLMC_ERR_ARG, "unknown stage \"%s\" (full, lora, projector, projector+decoder)", p->stage);
    const char *sk = p->lr_scheduler_type ? p->lr_scheduler_type : "linear";
    if (!strcmp(sk, "linear")) tr->sched = LR_LINEAR;
    else if (!strcmp(sk, "cosine")) tr->sched = LR_COSINE;
    else if (!strcmp(sk, "constant") || !strcmp(sk, "constant_with_warmup")) tr->sched = LR_CONSTANT;
    else return vlmc_fail(err, VLMC_ERR_ARG, "unknown lr scheduler \"%s\" (linear, cosine, constant)", sk);
    if (p->batch_size <= 0 || p->batch_size > 256 || p->grad_accum <= 0 || p->epochs < 0 || p->max_steps < 0 ||
        (p->epochs == 0 && p->max_steps == 0) || p->warmup_steps < 0)
        return vlmc_fail(err, VLMC_ERR_ARG, "invalid batch size / accumulation / epochs / steps / warmup");
    if (p->lr <= 0)
        p->lr = tr->stage == TM_STAGE_FULL ? 2e-5 : tr->stage == TM_STAGE_LORA ? 2e-4 : 1e-3;
    /* the thread count is process state: set for the run, restored at the end */
    const int threads_before = omp_get_max_threads();
    if (p->n_threads > 0) omp_set_num_threads(p->n_threads);
    tm_lora_config lc = {0};
    vlmc_status s;
    if (tr->stage == TM_STAGE_LORA) {
        lc.r = p->lora_r;
        lc.alpha = (float)p->lora_alpha;
        lc.dropout = (float)p->lora_dropout;
        if (lc.r <= 0) {
            s = vlmc_fail(err, VLMC_ERR_ARG, "lora r must be positive");
            goto out;
        }
        if (tm_lora_targets_parse(p->lora_targets ? p->lora_targets : "q,k,v,o,gate,up,down", &lc.targets)) {
            s = vlmc_fail(err, VLMC_ERR_ARG, "lora targets \"%s\": a list of q,k,v,o,gate,up,down", p->lora_targets);
            goto out;
        }
    }
    if ((s = train_model_load(&tr->m, p->model_dir, &lc, p->seed, err)) ||
        (s = train_model_set_stage(&tr->m, tr->stage, err)) ||
        (s = vlmc_tokenizer_load(p->model_dir, &tr->tok, err)) || (s = chat_template_load(p->model_dir, &tr->ct, err)))
        goto out;
    if (tr->m.is_vlm) {
        if ((s = vlmc_image_processor_load(p->model_dir, &tr->proc, err))) goto out;
    }
    if ((s = load_examples(tr, p->data_path, &tr->data, &tr->ex, &tr->n_ex, err))) goto out;
    if (p->eval_data_path && (s = load_examples(tr, p->eval_data_path, &tr->eval_data, &tr->eval_ex, &tr->n_eval, err)))
        goto out;
    {
        int32_t pad = vlmc_tokenizer_pad_id(tr->tok);
        if (pad < 0 || pad >= tr->m.V) pad = tr->m.cfg.text.pad_token_id;
        tr->pad_id = pad >= 0 && pad < tr->m.V ? pad : 0;
    }
    tr->micro_per_epoch = ((int64_t)tr->n_ex + p->batch_size - 1) / p->batch_size;
    tr->steps_per_epoch = (tr->micro_per_epoch + p->grad_accum - 1) / p->grad_accum;
    tr->total_steps = p->max_steps > 0 ? p->max_steps : (int64_t)p->epochs * tr->steps_per_epoch;
    tr->perm = malloc(tr->n_ex * sizeof *tr->perm);
    tr->curve = calloc((size_t)tr->total_steps + 1, sizeof *tr->curve);
    tr->eval_curve = calloc((size_t)tr->total_steps + 2, sizeof *tr->eval_curve);
    tr->eval_curve_step = calloc((size_t)tr->total_steps + 2, sizeof *tr->eval_curve_step);
    if (!tr->perm || !tr->curve || !tr->eval_curve || !tr->eval_curve_step) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((s = file_mkdirs(p->out_dir, err))) goto out;
    int64_t start = 0;
    if (p->resume_from && (s = load_checkpoint(tr, p->resume_from, &start, err))) goto out;
    for (int64_t i = 0; i < start && i < tr->total_steps; i++) tr->curve[i] = NAN;
    {
        char mpath[1200];
        snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", p->out_dir);
        tr->metrics = fopen(mpath, start > 0 ? "a" : "w");
        if (!tr->metrics) {
            s = vlmc_fail(err, VLMC_ERR_IO, "%s: cannot write", mpath);
            goto out;
        }
    }
    adamw_params ap = adamw_default_params();
    ap.lr = (float)p->lr;
    ap.weight_decay = (float)p->weight_decay;
    if (p->adam_beta1 > 0) ap.beta1 = (float)p->adam_beta1;
    if (p->adam_beta2 > 0) ap.beta2 = (float)p->adam_beta2;
    if (p->adam_eps > 0) ap.eps = (float)p->adam_eps;
    int n_bufs = train_model_grad_buffers(&tr->m, NULL, NULL, 0);
    float **bufs = malloc(sizeof(float *) * (size_t)(n_bufs + 1));
    size_t *sizes = malloc(sizeof(size_t) * (size_t)(n_bufs + 1));
    if (!bufs || !sizes) {
        free(bufs), free(sizes);
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto out;
    }
    train_model_grad_buffers(&tr->m, bufs, sizes, n_bufs);
    const double t0 = now_s();
    int64_t tokens_done = 0, step = start;
    bool stop = false;
    for (; step < tr->total_steps && !s && !stop; step++) {
        const int64_t epoch = step / tr->steps_per_epoch, in_epoch = step % tr->steps_per_epoch;
        epoch_order(tr, epoch);
        const int64_t mb0 = in_epoch * p->grad_accum;
        int64_t mb1 = mb0 + p->grad_accum;
        if (mb1 > tr->micro_per_epoch) mb1 = tr->micro_per_epoch;
        /* the loss of an optimizer step is the mean over every target token of its micro-batches */
        int64_t targets = 0;
        for (int64_t i = mb0 * p->batch_size; i < mb1 * p->batch_size && i < (int64_t)tr->n_ex; i++)
            targets += tr->ex[tr->perm[i]].n_targets;
        train_model_zero_grad(&tr->m);
        double loss_sum = 0;
        for (int64_t mb = mb0; mb < mb1 && !s; mb++) {
            tr_example *b[256];
            int nb = 0;
            for (int64_t i = mb * p->batch_size; i < (mb + 1) * p->batch_size && i < (int64_t)tr->n_ex; i++)
                b[nb++] = &tr->ex[tr->perm[i]];
            int64_t nt = 0;
            for (int i = 0; i < nb; i++) nt += b[i]->n_targets;
            tr->m.dropout_seed = mix64(p->seed * 0x100000001B3ull + (uint64_t)(epoch * tr->micro_per_epoch + mb));
            float l = 0;
            int64_t tk = 0;
            s = run_batch(tr, b, nb, true, targets ? (float)((double)nt / (double)targets) : 0.0f, &l, &tk, err);
            loss_sum += (double)l * (double)nt;
            tokens_done += tk;
        }
        if (s) break;
        const double loss = targets ? loss_sum / (double)targets : 0.0;
        double norm = p->max_grad_norm > 0 ? grad_clip_global_norm(bufs, sizes, (size_t)n_bufs, p->max_grad_norm)
                                           : grad_global_norm(bufs, sizes, (size_t)n_bufs);
        const double lr = p->lr * lr_schedule_factor(tr->sched, step, p->warmup_steps, tr->total_steps);
        if ((s = train_model_adamw_step(&tr->m, step + 1, (float)lr, &ap, true, err))) break;
        tr->curve[step] = loss;
        const double el = now_s() - t0;
        vlmc_train_progress pr = {.step = step + 1, .total_steps = tr->total_steps,
                                  .epoch = (double)(step + 1) / (double)tr->steps_per_epoch, .loss = loss, .lr = lr,
                                  .grad_norm = norm, .tokens_per_s = el > 0 ? (double)tokens_done / el : 0,
                                  .elapsed_s = el,
                                  .eta_s = el / (double)(step + 1 - start) * (double)(tr->total_steps - step - 1)};
        fprintf(tr->metrics,
                "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, "
                "\"tokens_per_s\": %.1f, \"elapsed_s\": %.3f}\n",
                (long long)pr.step, pr.epoch, loss, lr, norm, pr.tokens_per_s, el);
        fflush(tr->metrics);
        if (!p->quiet) {
            char eta[32], els[32];
            fmt_time(eta, sizeof eta, pr.eta_s);
            fmt_time(els, sizeof els, el);
            fprintf(stderr, "\rstep %lld/%lld | epoch %.2f | loss %.4f | lr %.3g | %.0f tok/s | %s elapsed, ETA %s   ",
                    (long long)pr.step, (long long)pr.total_steps, pr.epoch, loss, lr, pr.tokens_per_s, els, eta);
            fflush(stderr);
        }
        if (cb && cb(&pr, ud)) stop = true;
        const bool epoch_end = (step + 1) % tr->steps_per_epoch == 0 || step + 1 == tr->total_steps;
        if (tr->n_eval && epoch_end) {
            double ev = 0;
            if ((s = evaluate(tr, &ev, err))) break;
            tr->eval_curve_step[tr->n_eval_points] = (double)(step + 1);
            tr->eval_curve[tr->n_eval_points++] = ev;
            fprintf(tr->metrics, "{\"step\": %lld, \"epoch\": %.4f, \"eval_loss\": %.6f}\n", (long long)pr.step,
                    pr.epoch, ev);
            fflush(tr->metrics);
            if (!p->quiet) fprintf(stderr, "\n  eval loss %.4f after step %lld\n", ev, (long long)pr.step);
            pr.is_eval = 1;
            pr.eval_loss = ev;
            if (cb && cb(&pr, ud)) stop = true;
        }
        if (p->save_steps > 0 && ((step + 1) % p->save_steps == 0 || stop) && (s = save_checkpoint(tr, step + 1, err)))
            break;
    }
    free(bufs);
    free(sizes);
    if (!p->quiet) fprintf(stderr, "\n");
    if (s) goto out;
    write_svg(tr, step, NULL);
    if (!p->no_export) {
        if ((s = tr_export_model(&tr->m, p->model_dir, p->out_dir, err))) goto out;
        if (tr->stage == TM_STAGE_LORA) {
            char ad[1200];
            snprintf(ad, sizeof ad, "%s/adapter", p->out_dir);
            if ((s = tr_export_adapter(&tr->m, p->model_dir, ad, err))) goto out;
        }
    }
out:
    trainer_free(tr);
    omp_set_num_threads(threads_before);
    return s;
}

/* ---- gradients of one batch ------------------------------------------------------------------------ */

/* The images of a fixture-format input set as a train_batch wants them: pixel_values [N, C, S, S] or
 * [B, K, C, S, S] (tiles of each image), LLaVA-NeXT's image_sizes [B, 2] (only the tiles each size selects are
 * kept, as LlavaNextForConditionalGeneration drops padding tiles), Idefics3's pixel_attention_mask (all-zero
 * padding images dropped with their masks, as Idefics3Model does). Fills bt's image fields; *own_* are
 * malloc'ed (free them). */
static vlmc_status batch_images(const train_model *m, const char *dir, const named_array *pix, const named_array *sizes,
                                const named_array *pmask, train_batch *bt, float **own_pix, int32_t **own_mask,
                                int **own_tiles, vlmc_error *err) {
    *own_pix = NULL;
    *own_mask = NULL;
    *own_tiles = NULL;
    if (!pix) {
        if (sizes || pmask) return vlmc_fail(err, VLMC_ERR_ARG, "%s: image_sizes / pixel_attention_mask without pixel_values", dir);
        return VLMC_OK;
    }
    const int nd = pix->ndim;
    if (!m->is_vlm || (nd != 4 && nd != 5) || pix->shape[nd - 3] != m->VC || pix->shape[nd - 2] != m->VS ||
        pix->shape[nd - 1] != m->VS)
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: pixel_values do not fit the model's vision tower", dir);
    const int64_t groups = nd == 5 ? pix->shape[0] : 1, per = nd == 5 ? pix->shape[1] : pix->shape[0];
    const int64_t total = groups * per;
    const size_t tile = (size_t)m->VC * m->VS * m->VS, plane = (size_t)m->VS * m->VS;
    if (total <= 0 || total > (1 << 16)) return vlmc_fail(err, VLMC_ERR_LIMIT, "%s: %lld tiles", dir, (long long)total);
    if (sizes && (m->vlm != TM_LLAVA_NEXT || sizes->dtype != ARRAY_I32 || sizes->ndim != 2 || sizes->shape[1] != 2 ||
                  sizes->shape[0] != groups))
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: image_sizes must be int32 [%lld, 2] (llava_next only)", dir,
                         (long long)groups);
    if (pmask && (m->vlm != TM_IDEFICS3 || pmask->dtype != ARRAY_I32 ||
                  (size_t)named_array_numel(pmask) != (size_t)total * plane))
        return vlmc_fail(err, VLMC_ERR_ARG, "%s: pixel_attention_mask must be int32 with one %dx%d plane per tile "
                         "(idefics3 only)", dir, m->VS, m->VS);
    if (m->vlm == TM_LLAVA_NEXT && !sizes) return vlmc_fail(err, VLMC_ERR_ARG, "%s: llava_next needs image_sizes", dir);
    float *px = malloc((size_t)total * tile * sizeof(float));
    int32_t *mk = pmask ? malloc((size_t)total * plane * sizeof(int32_t)) : NULL;
    int *tiles = malloc((size_t)groups * sizeof(int));
    if (!px || (pmask && !mk) || !tiles) {
        free(px), free(mk), free(tiles);
        return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    }
    *own_pix = px, *own_mask = mk, *own_tiles = tiles;
    int n = 0;
    for (int64_t g = 0; g < groups; g++) {
        int64_t use = per;
        if (sizes) {
            int want = 0;
            const int32_t *sz = (const int32_t *)sizes->data + 2 * g;
            vlmc_status s = llava_next_num_tiles(&m->pack, sz[0], sz[1], &want, err);
            if (s) return s;
            if (want > per)
                return vlmc_fail(err, VLMC_ERR_ARG, "%s: image %lld needs %d tiles, pixel_values has %lld", dir,
                                 (long long)g, want, (long long)per);
            use = want;
        }
        tiles[g] = 0;
        for (int64_t k = 0; k < use; k++) {
            const float *src = (const float *)pix->data + (size_t)(g * per + k) * tile;
            if (m->vlm == TM_IDEFICS3) {
                size_t i = 0;
                while (i < tile && src[i] == 0.0f) i++;
                if (i == tile) continue; /* a padding image */
            }
            memcpy(px + (size_t)n * tile, src, tile * sizeof(float));
            if (mk) memcpy(mk + (size_t)n * plane, (const int32_t *)pmask->data + (size_t)(g * per + k) * plane,
                           plane * sizeof(int32_t));
            n++;
            tiles[g]++;
        }
    }
    bt->pixel_values = px;
    bt->n_images = n;
    bt->pixel_mask = mk;
    if (sizes) {
        bt->n_groups = (int)groups;
        bt->image_tiles = tiles;
        bt->image_sizes = sizes->data;
    }
    return VLMC_OK;
}

vlmc_status vlmc_compute_grads(const char *model_dir, const char *inputs_dir, const char *grads_path, float *loss,
                               vlmc_error *err) {
    array_set in;
    memset(&in, 0, sizeof in);
    train_model m;
    memset(&m, 0, sizeof m);
    float *own_pix = NULL;
    int32_t *own_mask = NULL;
    int *own_tiles = NULL;
    vlmc_status s = arrays_read_dir(inputs_dir, 1, &in, err);
    if (s) return s;
    named_array *ids = array_set_find(&in, "input_ids"), *mask = array_set_find(&in, "attention_mask"),
                *labels = array_set_find(&in, "labels"), *pix = array_set_find(&in, "pixel_values"),
                *sizes = array_set_find(&in, "image_sizes"), *pmask = array_set_find(&in, "pixel_attention_mask");
    if (!ids || !labels || ids->dtype != ARRAY_I32 || labels->dtype != ARRAY_I32 || ids->ndim != 2 ||
        labels->ndim != 2 || labels->shape[0] != ids->shape[0] || labels->shape[1] != ids->shape[1] ||
        (mask && (mask->dtype != ARRAY_I32 || named_array_numel(mask) != named_array_numel(ids))) ||
        (pix && pix->dtype != ARRAY_F32)) {
        s = vlmc_fail(err, VLMC_ERR_FORMAT,
                      "%s: needs int32 input_ids and labels [B, T] (optional int32 attention_mask [B, T], float32 "
                      "pixel_values [N, C, H, W] or [B, N, C, H, W], int32 image_sizes, pixel_attention_mask)",
                      inputs_dir);
        goto out;
    }
    for (int i = 0; i < in.count; i++) {
        const char *n = in.arrays[i].name;
        if (strcmp(n, "input_ids") && strcmp(n, "attention_mask") && strcmp(n, "labels") && strcmp(n, "pixel_values") &&
            strcmp(n, "image_sizes") && strcmp(n, "pixel_attention_mask")) {
            s = vlmc_fail(err, VLMC_ERR_UNSUPPORTED, "%s: input \"%s\" cannot be used for gradients", inputs_dir, n);
            goto out;
        }
    }
    if ((s = train_model_load(&m, model_dir, NULL, 0, err)) || (s = train_model_set_stage(&m, TM_STAGE_FULL, err)))
        goto out;
    if (ids->shape[0] <= 0 || ids->shape[1] <= 0 || ids->shape[0] * ids->shape[1] > (1 << 24)) {
        s = vlmc_fail(err, VLMC_ERR_LIMIT, "%s: input sizes out of range", inputs_dir);
        goto out;
    }
    const int B = (int)ids->shape[0], T = (int)ids->shape[1];
    train_batch bt = {.B = B, .T = T, .input_ids = ids->data, .attention_mask = mask ? mask->data : NULL,
                      .labels = labels->data};
    if ((s = batch_images(&m, inputs_dir, pix, sizes, pmask, &bt, &own_pix, &own_mask, &own_tiles, err)) ||
        (s = train_model_plan(&m, B, T, bt.n_images, err)))
        goto out;
    train_model_zero_grad(&m);
    if ((s = train_model_forward(&m, &bt, loss, err)) || (s = train_model_backward(&m, 1.0f, err))) goto out;
    s = train_model_write_grads(&m, grads_path, err);
out:
    free(own_pix);
    free(own_mask);
    free(own_tiles);
    train_model_free(&m);
    array_set_free(&in);
    return s;
}
