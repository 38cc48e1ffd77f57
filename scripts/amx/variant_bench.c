// variant_bench MODULE MODEL THREADS: runs llama.cpp on one ggml CPU backend module (a
// libggml-cpu-<variant>.so) and prints its prompt and decode speed and its first greedy
// tokens. Used by scripts/amx/check.sh to show which builds of ggml's AMX variant crash
// and what AMX gives where it runs (docs/BENCHMARKS.md, "AMX").
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ggml-backend.h"
#include "llama.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void quiet(enum ggml_log_level level, const char * text, void * data) {
    (void) level, (void) text, (void) data;
}

static int greedy(struct llama_context * ctx, int n_vocab) {
    const float * logits = llama_get_logits_ith(ctx, -1);
    int best = 0;
    for (int i = 1; i < n_vocab; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    return best;
}

int main(int argc, char ** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODULE MODEL THREADS\n", argv[0]);
        return 2;
    }
    const int n_prompt = 512, n_gen = 64, runs = 3, threads = atoi(argv[3]);
    ggml_log_set(quiet, NULL);
    if (!ggml_backend_load(argv[1])) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 2;
    }
    llama_log_set(quiet, NULL);
    ggml_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model * model = llama_model_load_from_file(argv[2], llama_model_default_params());
    if (!model) return 2;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = cp.n_ubatch = n_prompt;
    cp.n_threads = cp.n_threads_batch = threads;
    struct llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) return 2;
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_token * prompt = malloc(sizeof(llama_token) * n_prompt);
    for (int i = 0; i < n_prompt; i++) prompt[i] = (i * 7919 + 13) % n_vocab;
    double best_pp = 0, best_tg = 0;
    int first[8] = {0};
    for (int run = 0; run <= runs; run++) {  // run 0 warms up
        llama_memory_clear(llama_get_memory(ctx), true);
        double t0 = now();
        if (llama_decode(ctx, llama_batch_get_one(prompt, n_prompt))) return 3;
        double t1 = now();
        llama_token token = greedy(ctx, n_vocab);
        for (int i = 0; i < n_gen; i++) {
            if (i < 8) first[i] = token;
            if (llama_decode(ctx, llama_batch_get_one(&token, 1))) return 3;
            token = greedy(ctx, n_vocab);
        }
        double t2 = now();
        if (run > 0) {
            double pp = n_prompt / (t1 - t0), tg = n_gen / (t2 - t1);
            if (pp > best_pp) best_pp = pp;
            if (tg > best_tg) best_tg = tg;
        }
    }
    printf("pp%d %.1f tok/s  tg%d %.1f tok/s  (best of %d)  greedy:", n_prompt, best_pp, n_gen, best_tg, runs);
    for (int i = 0; i < 8; i++) printf(" %d", first[i]);
    printf("\n");
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
