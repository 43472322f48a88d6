"""Build a tiny random-weight Qwen2.5-VL (about 1 M parameters) that vLLM can serve, offline.

Usage: .venv-vllm/bin/python scripts/build_tiny_qwen_vl.py OUT_DIR

It exists so the judge service can be tested end to end against a real vLLM server without
downloading Qwen2.5-VL-7B. Its answers are meaningless: the weights are random except for one
deliberate bias (below). The architecture, tokenizer special tokens, chat template and image
processor follow Qwen2.5-VL, so vLLM's Qwen2.5-VL code path (3 images per prompt) is exercised.

The bias: one hidden dimension is made large in every token embedding and is the only one the
final norm passes on, and the unembedding rows of the digits 1..5 read that dimension with
unequal weights. Every next-token distribution then puts most of its mass on the digits 1..5,
so the `fast` mode's logprob path has digits to find (with plain random weights they never reach
the top logprobs); the digit weights differ so the expected score is not a trivial 3.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# The pre-tokenizer split of Qwen2 (digits are split one by one, so "1".."5" are single tokens).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The Qwen2.5-VL chat template (system default, images as vision_start/image_pad/vision_end).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A few KB of text to learn merges from; the 256 byte tokens cover any input regardless.
CORPUS = [
    "The restored image is compared with the degraded input and the ground truth reference.",
    "Degradation types: noise, rain streaks, haze, motion blur, low light. Score from 1 to 5.",
    "<Assessment><DegradationType>noise</DegradationType><Analysis>Sharp edges, no artifacts."
    "</Analysis><Score>4</Score></Assessment>",
    "Rate the quality of the image: excellent, good, fair, poor, bad. The quality is good.",
] * 20


def build_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, bos_token=None, model_max_length=4096,
    )


def bias_towards_digits(model: Qwen2_5_VLForConditionalGeneration, tokenizer, dim: int = 0) -> None:
    with torch.no_grad():
        model.model.language_model.embed_tokens.weight[:, dim] = 10.0
        norm = model.model.language_model.norm.weight
        norm.zero_()
        norm[dim] = 1.0
        head = model.lm_head.weight
        head[:, dim] = 0.0
        # logits ~ 11 * weight: the digits share most of the mass, 4 and 3 ahead of the rest.
        for digit, weight in zip("12345", (0.70, 0.80, 0.90, 0.95, 0.75)):
            head[tokenizer.convert_tokens_to_ids(digit), dim] = weight


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: build_tiny_qwen_vl.py OUT_DIR")
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    tokenizer = build_tokenizer(vocab_size=2048)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
            fullatt_block_indexes=[1], patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            window_size=112,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    bias_towards_digits(model, tokenizer)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessor(
        patch_size=14, merge_size=2, temporal_patch_size=2,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        min_pixels=56 * 56, max_pixels=448 * 448,
    )
    video_processor = Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"tiny Qwen2.5-VL with RANDOM weights ({n / 1e6:.2f} M parameters, digit-biased head) -> {out}")


if __name__ == "__main__":
    main()
