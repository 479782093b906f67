"""A model of a bigger model's shape with random weights, for speed figures only (no hub needed).

How fast a model runs depends on its shapes, not on what its weights learned: a random SmolLM2-1.7B
prefills and decodes as fast as the real one. No model bigger than the 135M demo can be downloaded on
the machines OpenArc is tested on, so the speed questions that depend on size (does bf16 speed up the
prefill of a 1.7B model?) are answered on such a model. Its answers are noise: never read quality
figures from it.

    python -m bench.synthetic_model OUT --shape smollm2-1.7b --tokenizer-from FOLDER

makes ``OUT/transformers`` (a transformers folder, the tokenizer copied from ``FOLDER``, a transformers
folder of a model with the same vocabulary, such as the one the test suite makes from the demo GGUF) and
exports it with ``openarc export --preset int8`` to ``OUT/int8``. Needs the ``export`` extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

SHAPES = {
    # Llama-architecture shapes of the SmolLM2 family (their config.json files), sharing one vocabulary.
    "smollm2-360m": {
        "hidden_size": 960,
        "intermediate_size": 2560,
        "num_hidden_layers": 32,
        "num_attention_heads": 15,
        "num_key_value_heads": 5,
    },
    "smollm2-1.7b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
    },
}
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
)


def make_transformers_folder(output: Path, shape: str, tokenizer_from: Path) -> Path:
    """A transformers folder with ``shape``'s configuration, random weights and ``tokenizer_from``'s
    tokenizer (and vocabulary size)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocabulary = json.loads((tokenizer_from / "config.json").read_text())["vocab_size"]
    config = LlamaConfig(
        vocab_size=vocabulary,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        **SHAPES[shape],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    for name in _TOKENIZER_FILES:
        if (tokenizer_from / name).is_file():
            shutil.copy(tokenizer_from / name, output / name)
    parameters = sum(p.numel() for p in model.parameters())
    logger.info("%s: %s with %.2f B parameters", output, shape, parameters / 1e9)
    return output


def main(argv: list[str] | None = None) -> int:
    """Make the transformers folder (unless it exists), export it and print the export's path."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.synthetic_model", description=__doc__.split("\n")[0]
    )
    parser.add_argument("output", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-1.7b")
    parser.add_argument("--tokenizer-from", type=Path, required=True, help="a transformers folder")
    parser.add_argument("--preset", default="int8", help="the openarc export preset (default int8)")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = args.output / "transformers"
    if not (folder / "config.json").is_file():
        make_transformers_folder(folder, args.shape, args.tokenizer_from)
    exported = args.output / args.preset
    command = ["openarc", "export", str(folder), str(exported), "--preset", args.preset, "--force"]
    subprocess.run([sys.executable, "-m", "gateway.cli", *command[1:]], check=True)
    sys.stdout.write(f"{exported}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
