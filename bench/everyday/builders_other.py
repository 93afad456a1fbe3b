"""JAX, NLP libraries, configs, and the non-pickle formats (Keras, HDF5, ONNX, GGUF, ...)."""

from __future__ import annotations

import os
from typing import Any

from everyday.corpus import Package, builder


@builder("jax")
def jax_files(pkg: Package) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    arr = jnp.arange(6.0).reshape(2, 3)
    pkg.pickles("array", arr, "jax Array", range(2, 6))
    pkg.pickles(
        "pytree", {"w": arr, "b": jnp.zeros(3), "step": 3}, "pytree of jax arrays", range(2, 6)
    )
    pkg.pickles("prng_key", jax.random.PRNGKey(0), "jax.random.PRNGKey", range(2, 6))
    with pkg.attempt("typed key"):
        pkg.pickles("typed_key", jax.random.key(0), "jax.random.key", range(2, 6))
    pkg.write("array.npy", "np.save(jax array)", lambda p: np.save(p, arr))
    pkg.pickles("bfloat16", jnp.ones(3, dtype=jnp.bfloat16), "bfloat16 jax array", range(2, 6))


@builder("optax")
def optax_files(pkg: Package) -> None:
    import jax.numpy as jnp
    import optax

    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    txs = {
        "adam": optax.adam(1e-3),
        "adamw": optax.adamw(1e-3),
        "sgd_momentum": optax.sgd(0.1, momentum=0.9),
        "chain": optax.chain(
            optax.clip_by_global_norm(1.0), optax.adamw(optax.cosine_decay_schedule(1e-3, 100))
        ),
    }
    for name, tx in txs.items():
        pkg.pickles(f"{name}_state", tx.init(params), f"optax {name} init state", range(2, 6))


@builder("flax")
def flax_files(pkg: Package) -> None:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from flax import serialization
    from flax.training import train_state

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            return nn.Dense(2)(nn.relu(nn.Dense(8)(x)))

    variables = MLP().init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    pkg.pickles("variables", variables, "flax linen variables", range(2, 6))
    pkg.write(
        "variables.msgpack",
        "flax.serialization.to_bytes(variables)",
        lambda p: p.write_bytes(serialization.to_bytes(variables)),
    )
    state = train_state.TrainState.create(
        apply_fn=None,
        params=variables["params"],  # type: ignore[arg-type]
        tx=optax.adam(1e-3),
    )
    pkg.pickles(
        "train_state_dict",
        serialization.to_state_dict(state),
        "to_state_dict(TrainState)",
        range(2, 6),
    )
    pkg.write(
        "train_state.msgpack",
        "to_bytes(TrainState)",
        lambda p: p.write_bytes(serialization.to_bytes(state)),
    )
    pkg.pickles("opt_state", state.opt_state, "TrainState.opt_state", range(2, 6))
    with pkg.attempt("nnx"):
        from flax import nnx

        model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
        pkg.pickles("nnx_state", nnx.state(model), "nnx.state(Linear)", range(2, 6))


@builder("gensim")
def gensim_files(pkg: Package) -> None:
    from gensim.corpora import Dictionary
    from gensim.models import Doc2Vec, FastText, LdaModel, TfidfModel, Word2Vec
    from gensim.models.doc2vec import TaggedDocument

    sentences = [["cat", "sat", "mat"], ["dog", "ran", "park"], ["cat", "dog", "friends"]] * 5
    w2v = Word2Vec(sentences, vector_size=8, min_count=1, epochs=2, workers=1)
    w2v.save(str(pkg.path("word2vec/word2vec.model")))
    pkg.record("word2vec", "Word2Vec.save()")
    w2v.wv.save(str(pkg.path("keyedvectors/vectors.kv")))
    pkg.record("keyedvectors", "KeyedVectors.save()")
    pkg.write(
        "keyedvectors/vectors.bin",
        "wv.save_word2vec_format(binary=True)",
        lambda p: w2v.wv.save_word2vec_format(str(p), binary=True),
    )
    docs = [TaggedDocument(s, [i]) for i, s in enumerate(sentences)]
    d2v = Doc2Vec(docs, vector_size=8, min_count=1, epochs=2, workers=1)
    d2v.save(str(pkg.path("doc2vec/doc2vec.model")))
    pkg.record("doc2vec", "Doc2Vec.save()")
    ft = FastText(sentences, vector_size=8, min_count=1, epochs=1, workers=1)
    ft.save(str(pkg.path("fasttext/fasttext.model")))
    pkg.record("fasttext", "FastText.save()")
    dictionary = Dictionary(sentences)
    dictionary.save(str(pkg.path("corpora/dictionary.dict")))
    pkg.record("corpora/dictionary.dict", "Dictionary.save()")
    bow = [dictionary.doc2bow(s) for s in sentences]
    TfidfModel(bow).save(str(pkg.path("tfidf/tfidf.model")))
    pkg.record("tfidf", "TfidfModel.save()")
    LdaModel(bow, num_topics=2, id2word=dictionary, passes=1).save(str(pkg.path("lda/lda.model")))
    pkg.record("lda", "LdaModel.save()")
    pkg.pickles("pickle/word2vec", w2v, "pickle.dump(Word2Vec)", range(2, 6))


@builder("spacy")
def spacy_files(pkg: Package) -> None:
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("The cat sat on the mat. It was happy.")
    pkg.pickles("nlp_blank_en", nlp, "spacy.blank('en') Language", range(2, 6))
    pkg.pickles("doc", doc, "spacy Doc", range(2, 6))
    pkg.pickles("vocab", nlp.vocab, "spacy Vocab", range(2, 6))
    pkg.write("docs.spacy", "DocBin.to_disk", lambda p: DocBin(docs=[doc]).to_disk(p))
    nlp.to_disk(pkg.path("pipeline"))
    pkg.record("pipeline", "Language.to_disk()")


@builder("nltk")
def nltk_files(pkg: Package) -> None:
    import nltk
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTrainer

    words = ["the", "cat", "sat", "on", "the", "mat", "the", "dog", "sat", "on", "the", "log"]
    pkg.pickles("freqdist", nltk.FreqDist(words), "FreqDist")
    pkg.pickles(
        "cond_freqdist",
        nltk.ConditionalFreqDist(nltk.bigrams(words)),
        "ConditionalFreqDist",
        range(2, 6),
    )
    feats = [({"last": w[-1]}, "a" if len(w) > 2 else "b") for w in words]
    pkg.pickles(
        "naive_bayes", nltk.NaiveBayesClassifier.train(feats), "NaiveBayesClassifier", range(2, 6)
    )
    trainer = PunktTrainer()
    trainer.train("Dr. Smith went to Washington. He arrived at 5 p.m. sharp. It rained. " * 20)
    pkg.pickles(
        "punkt", PunktSentenceTokenizer(trainer.get_params()), "PunktSentenceTokenizer", range(2, 6)
    )
    pkg.pickles("tree", nltk.Tree.fromstring("(S (NP the cat) (VP sat))"), "nltk Tree", range(2, 6))


@builder("omegaconf")
def omegaconf_files(pkg: Package) -> None:
    import torch
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "model": {"name": "mlp", "layers": [8, 16], "dropout": 0.1},
            "trainer": {"max_epochs": 10, "lr": "${model.dropout}"},
        }
    )
    pkg.pickles("dictconfig", cfg, "OmegaConf DictConfig", range(2, 6))
    pkg.pickles("listconfig", OmegaConf.create([1, 2, {"a": 3}]), "ListConfig", range(2, 6))
    pkg.write("config.yaml", "OmegaConf.save", lambda p: OmegaConf.save(cfg, p))
    pkg.torch_save(
        "checkpoint_with_cfg.pt",
        {"cfg": cfg, "state_dict": {"w": torch.ones(2)}},
        "checkpoint dict with a DictConfig (hydra style)",
    )


@builder("keras")
def keras_files(pkg: Package) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import numpy as np

    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(2),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=1, verbose=0)
    pkg.write("sequential.keras", "model.save(.keras)", lambda p: model.save(p))
    pkg.write("sequential.h5", "model.save(.h5) legacy", lambda p: model.save(p))
    pkg.write("sequential.weights.h5", "model.save_weights", lambda p: model.save_weights(p))
    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(3)(
        keras.layers.Flatten()(keras.layers.MaxPooling2D()(keras.layers.Conv2D(4, 3)(inp)))
    )
    functional = keras.Model(inp, out)
    pkg.write("functional_cnn.keras", "functional model.save(.keras)", lambda p: functional.save(p))
    pkg.write("functional_cnn.h5", "functional model.save(.h5)", lambda p: functional.save(p))
    rnn = keras.Sequential(
        [
            keras.Input((5, 3)),
            keras.layers.LSTM(4),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    pkg.write("lstm.keras", "LSTM model.save(.keras)", lambda p: rnn.save(p))


@builder("h5py")
def h5py_files(pkg: Package) -> None:
    import h5py
    import numpy as np

    def write(path: Any) -> None:
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=np.arange(100.0), compression="gzip")
            grp = f.create_group("meta")
            grp.attrs["name"] = "run-1"
            grp.create_dataset("labels", data=np.array([b"a", b"b"]))

    pkg.write("data.h5", "h5py.File datasets/groups/attrs", write)
    pkg.write("data.hdf5", "h5py.File datasets/groups/attrs", write)


@builder("onnx")
def onnx_files(pkg: Package) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y0"]), helper.make_node("Relu", ["Y0"], ["Y"])],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    model = helper.make_model(graph, producer_name="everyday")
    pkg.write(
        "helper_model.onnx",
        "onnx.helper.make_model + onnx.save",
        lambda p: onnx.save(model, str(p)),
    )
    pkg.write(
        "external/model.onnx",
        "onnx.save(save_as_external_data=True)",
        lambda p: onnx.save(
            model,
            str(p),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.data",
            size_threshold=0,
        ),
    )
    pkg.record("external/weights.data", "external data of external/model.onnx")


@builder("gguf")
def gguf_files(pkg: Package) -> None:
    import gguf
    import numpy as np

    def write(path: Any, arch: str = "llama") -> None:
        w = gguf.GGUFWriter(str(path), arch)
        w.add_name("tiny")
        w.add_context_length(64)
        w.add_embedding_length(8)
        w.add_block_count(1)
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b", "c"])
        w.add_tensor("token_embd.weight", np.ones((3, 8), dtype=np.float32))
        w.add_tensor("output.weight", np.ones((3, 8), dtype=np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    pkg.write("tiny-llama.gguf", "gguf.GGUFWriter (llama)", write)
    pkg.write("tiny-gpt2.gguf", "gguf.GGUFWriter (gpt2)", lambda p: write(p, "gpt2"))


@builder("safetensors")
def safetensors_files(pkg: Package) -> None:
    import numpy as np
    import torch
    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_pt

    tensors = {"w": torch.randn(4, 4), "b": torch.zeros(4, dtype=torch.bfloat16)}
    pkg.write("torch.safetensors", "safetensors.torch.save_file", lambda p: save_pt(tensors, p))
    pkg.write(
        "torch_meta.safetensors",
        "save_file(metadata={'format': 'pt'})",
        lambda p: save_pt(tensors, p, metadata={"format": "pt", "author": "me"}),
    )
    pkg.write(
        "numpy.safetensors",
        "safetensors.numpy.save_file",
        lambda p: save_np({"a": np.ones(3, dtype=np.float32)}, p),
    )


@builder("tokenizers")
def tokenizers_files(pkg: Package) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["hello world", "the cat sat on the mat"] * 10,
        trainers.BpeTrainer(vocab_size=50, special_tokens=["[UNK]"]),
    )
    pkg.write("tokenizer.json", "Tokenizer.save", lambda p: tok.save(str(p)))
    pkg.pickles("tokenizer", tok, "tokenizers.Tokenizer", range(2, 6))
