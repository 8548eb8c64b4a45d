"""Decoder LLMs (Llama, Qwen2, Mistral, GPT-2 families) as sentence encoders.

A decoder reads left to right, so only the last token has seen the whole sentence: decoder
embedders pool ``last`` (the hidden state of the last real token; :mod:`tuner.models._pooling` finds it
under right and left padding alike), or ``avg``, and often put the sentence in a prompt that asks
for a one-word summary, so that the last token is that word's prediction (PromptEOL:
``This sentence : "{text}" means in one word:"``; AnglE-LLaMA: ``Summarize sentence "{text}" in
one word:"``). What that takes here:

* :func:`is_decoder_model`: a model type with a causal-LM head and no masked-LM head (so BERT,
  which has both, stays an encoder). :class:`tuner.models._encoder.Encoder` then pools ``last`` by default
  and passes position ids counted from each row's first real token (:func:`position_ids`), so a
  left-padded row gets the positions it would have alone (models with absolute positions, GPT-2
  style, depend on it; rotary ones are unaffected up to rounding).
* :func:`ensure_pad_token`: decoder tokenizers often have no pad token; the end-of-sequence token
  (else unknown, else beginning) stands in. Its id never matters here: padding is masked, and
  ``last`` pooling reads the mask, not the ids.
* :class:`PromptedTokenizer`: the prompt lives *in the tokenizer* an encoder carries, so every path
  that turns text into ids (training views, STS, classification) applies it, and no caller has to
  remember. ``max_seq_length`` cuts the sentence, never the prompt: a long sentence is shortened
  to ``max_length`` tokens and then put in the prompt, so the words the last token must answer
  stay in place.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Optional, Sequence

from tuner.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: What a prompt template must contain: where the sentence goes.
PROMPT_SLOT = "{text}"
#: PromptEOL's template (Jiang et al. 2023): the last token predicts a one-word summary of the sentence.
PROMPTEOL = 'This sentence : "{text}" means in one word:"'


def check_prompt(value: Any) -> Optional[str]:
    """A prompt template (``{text}`` marks the sentence), or None for no prompt (also ``""``/``"none"``).

    The one check of a prompt: the run config (``prompt``), the study files' ``[search] prompt`` and
    :func:`with_prompt` call it; a bad template is a :class:`~tuner.errors.ConfigError` on ``prompt``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError("prompt", f"must be a text with {PROMPT_SLOT} where the sentence goes, got {value!r}")
    if not value.strip() or value.strip().lower() == "none":
        return None
    if PROMPT_SLOT not in value:
        raise ConfigError("prompt", f"{value!r} has no {PROMPT_SLOT}; write {PROMPT_SLOT} where the sentence goes, "
                                    f"e.g. {PROMPTEOL!r}")
    return value


def is_decoder_model(model: Any) -> bool:
    """True for decoder-only models (a causal-LM head and no masked-LM head in transformers' tables)."""
    config = getattr(model, "config", None)
    model_type = str(getattr(config, "model_type", "") or "")
    if not model_type:
        return False
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def takes_position_ids(model: Any) -> bool:
    """Whether ``model.forward`` (of the base model, under a peft wrapper) accepts ``position_ids``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "position_ids" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def position_ids(mask: "torch.Tensor") -> "torch.Tensor":
    """Positions counted from each row's first real token (0 on left padding): ``cumsum(mask) - 1``."""
    return (mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def ensure_pad_token(tokenizer: Any) -> Any:
    """Give ``tokenizer`` a pad token when it has none (eos, else unk, else bos); returns it."""
    base = unwrap(tokenizer)
    if getattr(base, "pad_token", None) is None:
        for name in ("eos_token", "unk_token", "bos_token"):
            token = getattr(base, name, None)
            if token is not None:
                base.pad_token = token
                break
    return tokenizer


def apply_prompt(prompt: Optional[str], text: str) -> str:
    """``text`` put into ``prompt`` at ``{text}`` (plain replacement: other braces stay as they are)."""
    return text if prompt is None else prompt.replace(PROMPT_SLOT, text)


class PromptedTokenizer:
    """A Hugging Face tokenizer that puts every text into ``prompt`` before tokenising it.

    Everything else (``pad_token_id``, ``padding_side``, ``save_pretrained``, ...) is the wrapped
    tokenizer's, reads and writes alike. ``tuner_prompt`` names the prompt for
    :mod:`tuner.models._tokenize`'s cache key. With ``truncation=True, max_length=n`` the *sentence* is cut
    to ``n`` tokens and the prompt added after, so a prompted text can be longer than ``n``.
    """

    _OWN = ("tokenizer", "prompt")

    def __init__(self, tokenizer: Any, prompt: str) -> None:
        object.__setattr__(self, "tokenizer", unwrap(tokenizer))
        object.__setattr__(self, "prompt", check_prompt(prompt))

    @property
    def tuner_prompt(self) -> Optional[str]:
        return self.prompt

    def __getattr__(self, name: str) -> Any:
        if name in self._OWN or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.tokenizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.tokenizer, name, value)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def __repr__(self) -> str:
        return f"PromptedTokenizer(prompt={self.prompt!r}, tokenizer={type(self.tokenizer).__name__})"

    def __call__(self, text: "str | Sequence[str]", *args: Any, **kwargs: Any) -> Any:
        single = isinstance(text, str)
        texts = [text] if single else [str(t) for t in text]
        if kwargs.get("truncation") and kwargs.get("max_length") is not None:
            texts = self._cut(texts, int(kwargs.pop("max_length")))
            kwargs["truncation"] = False
        prompted = [apply_prompt(self.prompt, t) for t in texts]
        return self.tokenizer(prompted[0] if single else prompted, *args, **kwargs)

    def _cut(self, texts: list[str], max_length: int) -> list[str]:
        """Each text shortened to its first ``max_length`` tokens (texts that fit are kept verbatim)."""
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [t if len(x) <= max_length else self.tokenizer.decode(x[:max_length]) for t, x in zip(texts, ids)]


def unwrap(tokenizer: Any) -> Any:
    """The Hugging Face tokenizer under a :class:`PromptedTokenizer` (or ``tokenizer`` itself)."""
    return tokenizer.tokenizer if isinstance(tokenizer, PromptedTokenizer) else tokenizer


def with_prompt(tokenizer: Any, prompt: Optional[str]) -> Any:
    """``tokenizer`` applying ``prompt`` (None or ``""``: no prompt, the plain tokenizer)."""
    prompt = check_prompt(prompt)
    base = unwrap(tokenizer)
    return base if prompt is None else PromptedTokenizer(base, prompt)
