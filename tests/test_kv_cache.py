"""KV-cache sizing of the CPU engines (rlaif_ray.modeling), by hand-worked numbers."""

import json

import pytest

from rlaif_ray.modeling import kv_bytes_per_token, kv_cache_mib_for, kv_cache_sequences, plan_kv_cache


@pytest.fixture()
def llama_dir(tmp_path):
    # 10 layers, 12 KV heads of 64: 2 × 10 × 12 × 64 × 4 bytes = 61440 bytes per fp32 token.
    conf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 768, "num_attention_heads": 12,
            "num_key_value_heads": 12, "head_dim": 64, "num_hidden_layers": 10, "intermediate_size": 2048,
            "vocab_size": 1056, "max_position_embeddings": 512}
    (tmp_path / "config.json").write_text(json.dumps(conf))
    return str(tmp_path)


def test_bytes_per_token_counts_k_and_v_of_every_layer(llama_dir):
    assert kv_bytes_per_token(llama_dir, "float32") == 61440
    assert kv_bytes_per_token(llama_dir, "bfloat16") == 30720


def test_grouped_query_attention_counts_kv_heads_only(tmp_path):
    conf = {"model_type": "llama", "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
            "num_hidden_layers": 30, "intermediate_size": 1536, "vocab_size": 100}
    (tmp_path / "config.json").write_text(json.dumps(conf))
    assert kv_bytes_per_token(str(tmp_path), "float32") == 2 * 30 * 3 * 64 * 4  # head_dim = 576 / 9


def test_sequences_take_whole_blocks():
    # Blocks of 32 tokens (CPU_KV_BLOCK_TOKENS), 32 × 61440 B = 1.875 MiB each.
    # 16 sequences of 96 tokens: 3 blocks each; 16 × 96 × 61440 B = 90 MiB.
    assert kv_cache_mib_for(61440, 16, 96) == 90
    # 144 tokens need 5 blocks (160 tokens): 16 × 160 × 61440 B = 150 MiB.
    assert kv_cache_mib_for(61440, 16, 144) == 150
    # 64 MiB = 34 whole blocks: 11 sequences of 3 blocks (96 tokens), 6 of 5 (144).
    assert kv_cache_sequences(64, 61440, 96) == 11
    assert kv_cache_sequences(64, 61440, 144) == 6


def test_a_configured_cache_too_small_generates_in_waves(llama_dir):
    small = plan_kv_cache(llama_dir, "float32", 64, sequences=16, tokens_per_sequence=96)
    assert (small.mib, small.needed_mib, small.holds, small.in_waves) == (64, 90, 11, True)
    auto = plan_kv_cache(llama_dir, "float32", None, sequences=16, tokens_per_sequence=96)
    assert (auto.mib, auto.holds, auto.in_waves) == (90, 16, False)


class _Said:
    def __init__(self):
        self.lines = []

    def say(self, line):
        self.lines.append(line)


def test_a_run_says_when_its_rollout_engines_would_generate_in_waves(make_config):
    from rlaif_ray.driver.roles import warn_if_generating_in_waves

    # The tiny policy: 2 (K, V) × 2 layers × 2 KV heads × 64 × 4 B = 2 KiB per token, so 16 MiB = 256
    # blocks of 32 tokens; one engine × 64 prompts × 4 samples = 256 sequences of 64 + 24 tokens, 3 blocks
    # each: 16 MiB holds 85 of them, all 256 need 256 × 96 × 2 KiB = 48 MiB.
    small = make_config("rollout.kv_cache_mib=16", "rollout.num_actors=1", "data.prompts_per_iteration=64")
    said = _Said()
    warn_if_generating_in_waves(small, said)
    assert said.lines == ["warning: rollout.kv_cache_mib 16 holds 85 of the 256 sequences each rollout engine generates "
                          "at once, so vLLM generates them in waves (slower); 48 holds them all (null sizes it so)"]
    quiet = _Said()
    warn_if_generating_in_waves(make_config("rollout.num_actors=1", "data.prompts_per_iteration=64"), quiet)
    assert quiet.lines == []  # null: sized for them
