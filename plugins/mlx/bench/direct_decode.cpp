// A direct MLX program, no hearth: SmolLM2/Llama GGUF greedy decode with the same graph
// as the plugin (src/forward.rs), to measure what the plugin's Rust layer costs.
// Build and run (MLX_DIR as for the plugin; scripts/bench.sh does both):
//   g++ -std=c++20 -O2 direct_decode.cpp -I$MLX_DIR/include -L$MLX_DIR/lib -lmlx \
//       -Wl,-rpath,$MLX_DIR/lib -o direct_decode
//   ./direct_decode MODEL.gguf [DECODE_TOKENS [PROMPT_TOKENS [RUNS]]]
// Each run evaluates a prompt of PROMPT_TOKENS token ids (a fixed 16-token chat, repeated
// with each run's own first token so no two runs share a prefix), then decodes
// DECODE_TOKENS tokens greedily; it prints one JSON object with the median, minimum
// and maximum prompt and decode rates over the runs, after one warm-up run.
#include <mlx/mlx.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

namespace mx = mlx::core;

struct Model {
  std::unordered_map<std::string, mx::array> w;
  int layers = 30, heads = 9, kv_heads = 3, head_dim = 64, embd = 576;
  float eps = 1e-5f, base = 100000.0f;

  mx::array linear(const std::string& name, const mx::array& x) {
    auto it = w.find(name + ".scales");
    if (it == w.end()) return mx::matmul(x, mx::transpose(w.at(name + ".weight")));
    int bits = w.at(name + ".weight").shape(-1) * 32 / (it->second.shape(-1) * 32);
    return mx::quantized_matmul(x, w.at(name + ".weight"), it->second, w.at(name + ".biases"), true, 32, bits);
  }
};

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  int tokens = argc > 2 ? std::stoi(argv[2]) : 128;
  int prompt_tokens = argc > 3 ? std::stoi(argv[3]) : 16;
  int runs = argc > 4 ? std::stoi(argv[4]) : 3;
  Model m;
  m.w = mx::load_gguf(argv[1]).first;
  for (auto& [name, a] : m.w)
    if (a.dtype() == mx::float16) a = mx::astype(a, mx::float32);
  for (auto& [name, a] : m.w) mx::eval(a);
  std::vector<mx::array> ks, vs;
  auto step = [&](const std::vector<int>& ids, int offset) {
    int n = ids.size();
    auto idx = mx::array(ids.data(), {n}, mx::int32);
    auto& e = m.w.at("token_embd.weight");
    auto x = mx::dequantize(mx::take(e, idx, 0), mx::take(m.w.at("token_embd.scales"), idx, 0),
                            mx::take(m.w.at("token_embd.biases"), idx, 0), 32, 8);
    x = mx::reshape(mx::astype(x, mx::float32), {1, n, m.embd});
    for (int l = 0; l < m.layers; ++l) {
      auto p = "blk." + std::to_string(l) + ".";
      auto h = mx::fast::rms_norm(x, m.w.at(p + "attn_norm.weight"), m.eps);
      auto split = [&](mx::array y, int count) {
        return mx::transpose(mx::reshape(y, {1, n, count, m.head_dim}), {0, 2, 1, 3});
      };
      auto q = mx::fast::rope(split(m.linear(p + "attn_q", h), m.heads), m.head_dim, true, m.base, 1.0f, offset);
      auto k = mx::fast::rope(split(m.linear(p + "attn_k", h), m.kv_heads), m.head_dim, true, m.base, 1.0f, offset);
      auto v = split(m.linear(p + "attn_v", h), m.kv_heads);
      if ((int)ks.size() <= l) {
        ks.push_back(k);
        vs.push_back(v);
      } else {
        ks[l] = mx::concatenate({ks[l], k}, 2);
        vs[l] = mx::concatenate({vs[l], v}, 2);
      }
      auto a = mx::fast::scaled_dot_product_attention(q, ks[l], vs[l], 1.0f / std::sqrt(64.0f), n > 1 ? "causal" : "");
      a = mx::reshape(mx::transpose(a, {0, 2, 1, 3}), {1, n, m.heads * m.head_dim});
      x = x + m.linear(p + "attn_output", a);
      h = mx::fast::rms_norm(x, m.w.at(p + "ffn_norm.weight"), m.eps);
      auto g = m.linear(p + "ffn_gate", h);
      x = x + m.linear(p + "ffn_down", g * mx::sigmoid(g) * m.linear(p + "ffn_up", h));
    }
    auto last = mx::fast::rms_norm(mx::slice(x, {0, n - 1, 0}, {1, n, m.embd}), m.w.at("output_norm.weight"), m.eps);
    auto logits = m.linear("token_embd", last);
    auto next = mx::argmax(mx::reshape(logits, {-1}));
    mx::eval(next);
    return next.item<uint32_t>();
  };
  const std::vector<int> chat = {1, 9690, 198, 2683, 314, 253, 1096, 1341, 2914, 563, 253, 17538, 30, 2, 198, 1};
  std::vector<double> prompt_rates, decode_rates;
  for (int run = 0; run <= runs; ++run) {
    std::vector<int> prompt = {run + 100};
    while ((int)prompt.size() < prompt_tokens) prompt.push_back(chat[prompt.size() % chat.size()]);
    ks.clear();
    vs.clear();
    auto t0 = std::chrono::steady_clock::now();
    int token = step(prompt, 0);
    auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < tokens; ++i) token = step({token}, prompt.size() + i);
    auto t2 = std::chrono::steady_clock::now();
    if (run == 0) continue;  // the warm-up
    prompt_rates.push_back(prompt.size() / std::chrono::duration<double>(t1 - t0).count());
    decode_rates.push_back(tokens / std::chrono::duration<double>(t2 - t1).count());
  }
  auto spread = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    double median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    return "{\"median\": " + std::to_string(median) + ", \"min\": " + std::to_string(v.front()) +
           ", \"max\": " + std::to_string(v.back()) + "}";
  };
  std::printf("{\"prompt_tokens\": %d, \"gen_tokens\": %d, \"runs\": %d, \"prompt_tokens_per_second\": %s, "
              "\"decode_tokens_per_second\": %s}\n",
              prompt_tokens, tokens, runs, spread(prompt_rates).c_str(), spread(decode_rates).c_str());
}
