"""A tiny causal LM built in the test: two Llama layers, random weights, a word-level tokenizer.

Fast unit tests of templating, masking, packing, generation and stop handling run on it in
milliseconds; the slow tests use the packaged SmolLM2-135M. The chat template has SmolLM2's
layout (``<|im_start|>role\\n...<|im_end|>\\n``) and ``<|im_end|>`` is the end-of-sequence token,
so what holds here holds for the real model's template.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
WORDS = (
    "system user assistant you are a helpful bot how do i cancel my order track refund "
    "the it is to your please call us open account reset password yes no thanks hello"
).split()


def build_tiny_lm(folder: str | Path, *, seed: int = 0, layers: int = 2, hidden: int = 32,
                  max_positions: int = 256) -> Path:
    """Write a random-weight ``LlamaForCausalLM`` and its tokenizer to ``folder`` (save_pretrained)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = Path(folder)
    vocab = {token: i for i, token in enumerate([*SPECIALS, "\n", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()]
    )
    core.add_special_tokens(SPECIALS)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>",
        bos_token="<|im_start|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_positions,
        tie_word_embeddings=True, pad_token_id=vocab["<pad>"], eos_token_id=vocab["<|im_end|>"],
        bos_token_id=vocab["<|im_start|>"],
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
