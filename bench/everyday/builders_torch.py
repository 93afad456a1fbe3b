"""PyTorch and its ecosystem: whole-model saves, states, checkpoints, exported programs."""

from __future__ import annotations

import argparse
import pathlib
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from everyday.corpus import Package, builder


def _mlp() -> Any:
    import torch.nn as nn

    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))


def _models() -> dict[str, Any]:
    import torch.nn as nn

    return {
        "sequential": _mlp(),
        "conv": nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 3 * 3, 2),
        ),
        "lstm": nn.LSTM(8, 16, num_layers=2, batch_first=True),
        "gru": nn.GRU(8, 8),
        "transformer": nn.TransformerEncoder(
            nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True), 2
        ),
        "embedding": nn.ModuleDict({"emb": nn.Embedding(100, 8), "norm": nn.LayerNorm(8)}),
        "multihead": nn.MultiheadAttention(16, 4),
    }


class TinyNet:  # replaced by a torch.nn.Module subclass on first use (torch imported lazily)
    pass


def _tiny_net_class() -> Any:
    import torch.nn as nn

    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _mlp()

        def forward(self, x: Any) -> Any:
            return self.body(x)

    TinyNet.__module__ = __name__
    TinyNet.__qualname__ = "TinyNet"
    globals()["TinyNet"] = TinyNet
    return TinyNet


def _optimizers(model: Any) -> dict[str, Any]:
    import torch

    x = torch.randn(4, 8)
    out: dict[str, Any] = {}
    for name, cls, kw in [
        ("sgd", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
        ("adam", torch.optim.Adam, {"lr": 1e-3}),
        ("adamw", torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
        ("rmsprop", torch.optim.RMSprop, {"lr": 1e-3}),
        ("adagrad", torch.optim.Adagrad, {"lr": 1e-2}),
    ]:
        opt = cls(model.parameters(), **kw)
        model(x).sum().backward()
        opt.step()
        out[name] = opt
    return out


@builder("torch")
def torch_files(pkg: Package) -> None:
    import numpy as np
    import torch

    torch.manual_seed(0)
    for name, model in _models().items():
        pkg.torch_save(f"whole/{name}.pt", model, f"nn model {name}")
        pkg.torch_save(f"state_dict/{name}.pth", model.state_dict(), f"{name}.state_dict()")
    mlp = _mlp()
    for proto in (2, 3, 4, 5):
        pkg.torch_save(f"protocol/mlp.p{proto}.pt", mlp, "nn.Sequential", pickle_protocol=proto)
        pkg.torch_save(
            f"protocol/mlp_sd.p{proto}.pt", mlp.state_dict(), "state_dict", pickle_protocol=proto
        )
    pkg.torch_save("legacy/mlp.pt", mlp, "nn.Sequential", _use_new_zipfile_serialization=False)
    pkg.torch_save(
        "legacy/mlp_sd.pt", mlp.state_dict(), "state_dict", _use_new_zipfile_serialization=False
    )
    pkg.torch_save("whole/custom_module.pt", _tiny_net_class()(), "a script's own nn.Module")
    quant = torch.ao.quantization.quantize_dynamic(_mlp(), {torch.nn.Linear}, dtype=torch.qint8)
    pkg.torch_save("whole/quantized_dynamic.pt", quant, "quantize_dynamic(nn.Sequential)")
    pkg.torch_save("state_dict/quantized_dynamic.pt", quant.state_dict(), "quantized state_dict")
    tensors = {
        "f32": torch.randn(3, 3),
        "f16": torch.randn(3).half(),
        "bf16": torch.randn(3).bfloat16(),
        "i64": torch.arange(5),
        "bool": torch.tensor([True, False]),
        "complex": torch.randn(2, dtype=torch.complex64),
        "sparse_coo": torch.eye(3).to_sparse(),
        "sparse_csr": torch.eye(3).to_sparse_csr(),
        "qint8": torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8),
        "param": torch.nn.Parameter(torch.randn(2)),
        "view": torch.arange(10)[2:6],
    }
    pkg.torch_save("tensors/dict_of_tensors.pt", tensors, "dict of tensors of many dtypes")
    pkg.torch_save(
        "tensors/meta.pt",
        {"size": torch.Size([2, 3]), "dtype": torch.float16, "device": torch.device("cpu")},
        "torch.Size/dtype/device",
    )
    pkg.torch_save("tensors/list.pt", [torch.randn(2), (torch.ones(1), 3)], "list of tensors")
    pkg.torch_save(
        "tensors/distribution.pt",
        torch.distributions.Normal(torch.zeros(2), torch.ones(2)),
        "torch.distributions.Normal",
    )
    model = _mlp()
    for name, opt in _optimizers(model).items():
        pkg.torch_save(f"optim/{name}.pt", opt.state_dict(), f"{name} optimizer.state_dict()")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheds = {
        "steplr": torch.optim.lr_scheduler.StepLR(opt, 10),
        "cosine": torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100),
        "onecycle": torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=100),
        "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(opt),
        "exponential": torch.optim.lr_scheduler.ExponentialLR(opt, 0.9),
        "lambda": torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.95**step),
    }
    for name, sched in scheds.items():
        pkg.torch_save(f"sched/{name}.pt", sched.state_dict(), f"{name} scheduler.state_dict()")
    pkg.torch_save(
        "checkpoint/train_checkpoint.pt",
        {
            "epoch": 3,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": opt.state_dict(),
            "scheduler_state_dict": scheds["steplr"].state_dict(),
            "loss": 0.25,
            "args": argparse.Namespace(lr=0.1, out=pathlib.Path("runs/exp1")),
        },
        "the tutorial training checkpoint dict",
    )
    pkg.torch_save(
        "rng/rng_state.pth",
        {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cpu": torch.random.get_rng_state(),
        },
        "python/numpy/torch RNG states",
    )
    pkg.torch_save("rng/torch_rng.pt", torch.get_rng_state(), "torch.get_rng_state()")
    pkg.torch_save(
        "rng/generator.pt", torch.Generator().manual_seed(1).get_state(), "Generator.get_state()"
    )
    with pkg.attempt("GradScaler"):
        scaler = torch.amp.GradScaler("cpu", enabled=True)
        pkg.torch_save("amp/grad_scaler.pt", scaler.state_dict(), "GradScaler.state_dict()")
        pkg.torch_save("amp/grad_scaler_whole.pt", scaler, "GradScaler object")
    example = (torch.randn(2, 8),)
    pkg.write(
        "jit/scripted.pt",
        "torch.jit.save(torch.jit.script(model))",
        lambda p: torch.jit.save(torch.jit.script(_mlp()), str(p)),
    )
    pkg.write(
        "jit/traced.pt",
        "torch.jit.save(torch.jit.trace(model))",
        lambda p: torch.jit.save(torch.jit.trace(_mlp().eval(), example), str(p)),
    )
    pkg.write(
        "jit/traced_conv.pt",
        "torch.jit.save(torch.jit.trace(conv model))",
        lambda p: torch.jit.save(
            torch.jit.trace(_models()["conv"].eval(), (torch.randn(1, 3, 8, 8),)), str(p)
        ),
    )
    pkg.write(
        "export/mlp.pt2",
        "torch.export.save(torch.export.export(model))",
        lambda p: torch.export.save(torch.export.export(_mlp().eval(), example), str(p)),
    )
    pkg.write(
        "export/conv.pt2",
        "torch.export.save(torch.export.export(conv model))",
        lambda p: torch.export.save(
            torch.export.export(_models()["conv"].eval(), (torch.randn(1, 3, 8, 8),)), str(p)
        ),
    )
    pkg.write(
        "onnx/mlp_legacy.onnx",
        "torch.onnx.export(model, dynamo=False)",
        lambda p: torch.onnx.export(_mlp().eval(), example, str(p), dynamo=False),
    )
    pkg.write(
        "onnx/mlp_dynamo.onnx",
        "torch.onnx.export(model, dynamo=True)",
        lambda p: torch.onnx.export(_mlp().eval(), example, str(p), dynamo=True),
    )
    pkg.record("onnx/mlp_dynamo.onnx.data", "external data of torch.onnx.export(dynamo=True)")


def _tiny_configs() -> dict[str, Any]:
    import transformers as tf

    small = {
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "vocab_size": 100,
        "max_position_embeddings": 64,
    }
    return {
        "bert": (tf.BertConfig(**small), tf.BertForSequenceClassification),
        "gpt2": (
            tf.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=100, n_positions=64),
            tf.GPT2LMHeadModel,
        ),
        "t5": (
            tf.T5Config(d_model=16, d_ff=32, num_layers=2, num_heads=2, d_kv=8, vocab_size=100),
            tf.T5ForConditionalGeneration,
        ),
        "vit": (
            tf.ViTConfig(
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                image_size=16,
                patch_size=8,
            ),
            tf.ViTForImageClassification,
        ),
        "llama": (
            tf.LlamaConfig(
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                intermediate_size=32,
                vocab_size=100,
            ),
            tf.LlamaForCausalLM,
        ),
    }


class _Rows:
    """A tiny map-style dataset of token ids, as Trainer wants it."""

    def __init__(self, n: int = 8) -> None:
        import torch

        self.items = [
            {
                "input_ids": torch.randint(0, 100, (12,)),
                "attention_mask": torch.ones(12),
                "labels": torch.tensor(i % 2),
            }
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


@builder("transformers")
def transformers_files(pkg: Package) -> None:
    import torch
    import transformers as tf

    tmp = Path(tempfile.mkdtemp())
    args = tf.TrainingArguments(
        output_dir=str(tmp / "out"),
        max_steps=2,
        save_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        logging_steps=1,
        learning_rate=1e-3,
    )
    pkg.torch_save("training_args/training_args.bin", args, "TrainingArguments (Trainer)")
    with pkg.attempt("Seq2SeqTrainingArguments"):
        s2s = tf.Seq2SeqTrainingArguments(
            output_dir=str(tmp / "s2s"), report_to=[], predict_with_generate=True
        )
        pkg.torch_save("training_args/seq2seq_training_args.bin", s2s, "Seq2SeqTrainingArguments")
    torch.manual_seed(0)
    config, cls = _tiny_configs()["bert"]
    model = cls(config)
    trainer = tf.Trainer(model=model, args=args, train_dataset=_Rows())
    trainer.train()
    ckpt = tmp / "out" / "checkpoint-2"
    shutil.copytree(ckpt, pkg.path("trainer/checkpoint-2"))
    pkg.record("trainer/checkpoint-2", "Trainer.train() checkpoint folder (save_steps)")
    for name, (config, cls) in _tiny_configs().items():
        model = cls(config)
        pkg.torch_save(f"whole/{name}.pt", model, f"torch.save({cls.__name__}(config))")
        pkg.torch_save(f"state_dict/{name}.bin", model.state_dict(), f"{name} state_dict")
        with pkg.attempt(f"{name} save_pretrained"):
            model.save_pretrained(pkg.path(f"pretrained/{name}"))
            pkg.record(f"pretrained/{name}", "save_pretrained()")
        pkg.pickles(f"config/{name}_config", config, f"{type(config).__name__}", range(2, 6))
    pkg.pickles(
        "generation/generation_config",
        tf.GenerationConfig(max_new_tokens=5),
        "GenerationConfig",
        range(2, 6),
    )
    enc = tf.BatchEncoding({"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1]]})
    pkg.pickles("batch_encoding/batch_encoding", enc, "BatchEncoding", range(2, 6))
    pkg.torch_save(
        "batch_encoding/batch_encoding_tensors.pt",
        tf.BatchEncoding({"input_ids": torch.tensor([[1, 2]])}),
        "BatchEncoding",
    )
    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]))
    with pkg.attempt("BertTokenizer"):
        tok = tf.BertTokenizer(str(vocab))
        pkg.pickles("tokenizer/bert_tokenizer", tok, "BertTokenizer", range(2, 6))
    with pkg.attempt("BertTokenizerFast"):
        tok = tf.BertTokenizerFast(str(vocab))
        pkg.pickles("tokenizer/bert_tokenizer_fast", tok, "BertTokenizerFast", range(2, 6))
        tok.save_pretrained(pkg.path("tokenizer/saved"))
        pkg.record("tokenizer/saved", "tokenizer.save_pretrained()")
    shutil.rmtree(tmp, ignore_errors=True)


@builder("accelerate")
def accelerate_files(pkg: Package) -> None:
    import torch
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 5)
    model, opt, sched = acc.prepare(model, opt, sched)
    model(torch.randn(2, 8)).sum().backward()
    opt.step()
    for safe in (True, False):
        out = pkg.path(f"save_state_{'safe' if safe else 'bin'}")
        acc.save_state(str(out), safe_serialization=safe)
        pkg.record(out.name, f"Accelerator.save_state(safe_serialization={safe})")
    acc.save(model.state_dict(), pkg.path("accelerator_save.pt"))
    pkg.record("accelerator_save.pt", "Accelerator.save(state_dict)")


@builder("peft")
def peft_files(pkg: Package) -> None:
    import peft
    import transformers as tf

    config, cls = _tiny_configs()["gpt2"]
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM")
    pkg.pickles("config/lora_config", lora, "LoraConfig", range(2, 6))
    pkg.torch_save("config/lora_config.pt", lora, "LoraConfig")
    model = peft.get_peft_model(cls(config), lora)
    pkg.torch_save("whole/peft_model.pt", model, "get_peft_model(GPT2LMHeadModel)")
    for safe in (True, False):
        with pkg.attempt(f"save_pretrained {safe}"):
            model.save_pretrained(
                pkg.path(f"adapter_{'safe' if safe else 'bin'}"), safe_serialization=safe
            )
            pkg.record(
                f"adapter_{'safe' if safe else 'bin'}",
                f"PeftModel.save_pretrained(safe_serialization={safe})",
            )
    with pkg.attempt("prefix"):
        pc = peft.PrefixTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM")
        pkg.pickles("config/prefix_config", pc, "PrefixTuningConfig", range(2, 6))
    with pkg.attempt("ia3"):
        bert_cfg, bert_cls = _tiny_configs()["bert"]
        ia3 = peft.IA3Config(
            target_modules=["key", "value", "output.dense"],
            feedforward_modules=["output.dense"],
            task_type="SEQ_CLS",
        )
        pkg.torch_save(
            "whole/ia3_bert.pt", peft.get_peft_model(bert_cls(bert_cfg), ia3), "get_peft_model(IA3)"
        )
    del tf


@builder("lightning")
def lightning_files(pkg: Package) -> None:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    class LitModel(L.LightningModule):
        def __init__(self, hparams: argparse.Namespace, data_dir: pathlib.Path) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = _mlp()

        def training_step(self, batch: Any, idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters(), lr=1e-3)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}

    LitModel.__module__ = __name__
    data = torch.utils.data.TensorDataset(torch.randn(16, 8), torch.randint(0, 2, (16,)))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    hp = argparse.Namespace(
        lr=1e-3,
        batch_size=4,
        data=pathlib.Path("/data/train"),
        out_dir=pathlib.PurePosixPath("runs"),
        tags=["a", "b"],
    )
    tmp = Path(tempfile.mkdtemp())
    trainer = L.Trainer(
        max_epochs=2,
        default_root_dir=str(tmp),
        accelerator="cpu",
        logger=CSVLogger(str(tmp / "logs")),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(
                dirpath=str(tmp / "ckpt"), monitor="train_loss", save_top_k=2, save_last=True
            ),
            EarlyStopping(monitor="train_loss", patience=3),
            LearningRateMonitor(),
        ],
    )
    model = LitModel(hp, pathlib.Path("/data"))
    trainer.fit(model, loader)
    for ckpt in sorted((tmp / "ckpt").glob("*.ckpt")):
        shutil.copy(ckpt, pkg.path(f"checkpoints/{ckpt.name}"))
        pkg.record(f"checkpoints/{ckpt.name}", "ModelCheckpoint during Trainer.fit")
    trainer.save_checkpoint(pkg.path("manual/save_checkpoint.ckpt"))
    pkg.record("manual/save_checkpoint.ckpt", "Trainer.save_checkpoint()")
    trainer.save_checkpoint(pkg.path("manual/weights_only.ckpt"), weights_only=True)
    pkg.record("manual/weights_only.ckpt", "Trainer.save_checkpoint(weights_only=True)")
    with pkg.attempt("omegaconf hparams"):
        from omegaconf import OmegaConf

        cfg = OmegaConf.create({"model": {"lr": 1e-3, "layers": [8, 16]}, "seed": 1})
        trainer2 = L.Trainer(
            max_steps=1,
            default_root_dir=str(tmp),
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
        )
        model2 = LitModel(cfg, pathlib.Path("/data"))  # type: ignore[arg-type]
        trainer2.fit(model2, loader)
        trainer2.save_checkpoint(pkg.path("manual/omegaconf_hparams.ckpt"))
        pkg.record("manual/omegaconf_hparams.ckpt", "Trainer.save_checkpoint(), DictConfig hparams")
    shutil.rmtree(tmp, ignore_errors=True)


@builder("torchmetrics")
def torchmetrics_files(pkg: Package) -> None:
    import torch
    import torchmetrics as tm

    preds, target = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0])
    probs = torch.tensor([0.1, 0.8, 0.6, 0.3])
    metrics = {
        "accuracy": tm.Accuracy(task="binary"),
        "f1": tm.F1Score(task="multiclass", num_classes=2),
        "auroc": tm.AUROC(task="binary"),
        "mse": tm.MeanSquaredError(),
        "collection": tm.MetricCollection(
            [tm.Accuracy(task="binary"), tm.Precision(task="binary")]
        ),
        "confusion": tm.ConfusionMatrix(task="binary"),
    }
    for name, metric in metrics.items():
        with pkg.attempt(name):
            metric.update(
                probs if name in ("auroc", "mse") else preds,
                target.float() if name == "mse" else target,
            )
        pkg.torch_save(f"{name}.pt", metric, f"torchmetrics {name} after update()")
        pkg.pickles(name, metric, f"torchmetrics {name}", range(2, 6))
        pkg.torch_save(f"{name}.state_dict.pt", metric.state_dict(), f"{name}.state_dict()")


@builder("torch_geometric")
def pyg_files(pkg: Package) -> None:
    import torch
    from torch_geometric.data import Data, HeteroData, InMemoryDataset
    from torch_geometric.nn import GATConv, GCNConv, Sequential

    data = Data(
        x=torch.randn(4, 3),
        edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]),
        y=torch.tensor([0, 1, 0, 1]),
    )
    pkg.torch_save("data/data.pt", data, "torch_geometric Data")
    pkg.pickles("data/data", data, "Data", range(2, 6))
    hetero = HeteroData()
    hetero["paper"].x = torch.randn(3, 4)
    hetero["author"].x = torch.randn(2, 4)
    hetero["author", "writes", "paper"].edge_index = torch.tensor([[0, 1], [0, 2]])
    pkg.torch_save("data/hetero.pt", hetero, "HeteroData")
    collated = InMemoryDataset.collate([data, data])
    pkg.torch_save("processed/data.pt", collated, "InMemoryDataset.collate -> (data, slices)")
    model = Sequential(
        "x, edge_index",
        [
            (GCNConv(3, 8), "x, edge_index -> x"),
            torch.nn.ReLU(),
            (GATConv(8, 2), "x, edge_index -> x"),
        ],
    )
    pkg.torch_save("model/gnn_state_dict.pt", model.state_dict(), "GNN state_dict")
    with pkg.attempt("whole gcn"):
        pkg.torch_save("model/gcnconv.pt", GCNConv(3, 8), "torch.save(GCNConv)")


@builder("sentence_transformers")
def st_files(pkg: Package) -> None:
    import transformers as tf
    from sentence_transformers import SentenceTransformer, models

    tmp = Path(tempfile.mkdtemp())
    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]))
    config, _ = _tiny_configs()["bert"]
    tf.BertModel(config).save_pretrained(tmp / "bert")
    tf.BertTokenizerFast(str(vocab)).save_pretrained(tmp / "bert")
    word = models.Transformer(str(tmp / "bert"))
    model = SentenceTransformer(modules=[word, models.Pooling(16, "mean")], device="cpu")
    model.save(str(pkg.path("saved")))
    pkg.record("saved", "SentenceTransformer.save()")
    pkg.torch_save("whole/sentence_transformer.pt", model, "torch.save(SentenceTransformer)")
    shutil.rmtree(tmp, ignore_errors=True)


@builder("diffusers")
def diffusers_files(pkg: Package) -> None:
    import diffusers

    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    for safe in (True, False):
        unet.save_pretrained(pkg.path(f"unet_{'safe' if safe else 'bin'}"), safe_serialization=safe)
        pkg.record(f"unet_{'safe' if safe else 'bin'}", f"save_pretrained(safe={safe})")
    pkg.torch_save("whole/unet.pt", unet, "torch.save(UNet2DModel)")
    sched = diffusers.DDPMScheduler(num_train_timesteps=10)
    pkg.pickles("scheduler/ddpm", sched, "DDPMScheduler", range(2, 6))
    sched.save_pretrained(pkg.path("scheduler/saved"))
    pkg.record("scheduler/saved", "scheduler.save_pretrained()")


@builder("einops")
def einops_files(pkg: Package) -> None:
    import torch.nn as nn
    from einops.layers.torch import Rearrange, Reduce

    model = nn.Sequential(
        Rearrange("b c h w -> b (c h w)"),
        nn.Linear(12, 4),
        Rearrange("b (g d) -> b g d", g=2),
        Reduce("b g d -> b d", "mean"),
    )
    pkg.torch_save("whole/rearrange_model.pt", model, "nn.Sequential with einops layers")
    pkg.pickles("rearrange", Rearrange("b h w -> b (h w)"), "einops Rearrange", range(2, 6))


@builder("torchaudio")
def torchaudio_files(pkg: Package) -> None:
    import torch.nn as nn
    import torchaudio

    mel = nn.Sequential(
        torchaudio.transforms.MelSpectrogram(sample_rate=8000, n_mels=16),
        torchaudio.transforms.AmplitudeToDB(),
    )
    pkg.torch_save("whole/melspec.pt", mel, "torch.save(MelSpectrogram pipeline)")
    pkg.torch_save("state_dict/melspec.pt", mel.state_dict(), "state_dict")
