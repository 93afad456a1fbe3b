"""The scientific Python stack: arrays, frames, estimators, results objects, sparse matrices."""

from __future__ import annotations

import datetime as dt
from typing import Any

from everyday.corpus import Package, builder


def _xy(n: int = 60, seed: int = 0) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return x, y


@builder("numpy")
def numpy_files(pkg: Package) -> None:
    import numpy as np

    arrays = {
        "f64": np.random.default_rng(0).normal(size=(4, 4)),
        "i32": np.arange(10, dtype=np.int32),
        "bool": np.array([True, False]),
        "complex": np.array([1 + 2j]),
        "str": np.array(["a", "bcd"]),
        "datetime": np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[D]"),
        "structured": np.zeros(3, dtype=[("x", "f4"), ("y", "i2"), ("name", "U8")]),
        "fortran": np.asfortranarray(np.ones((3, 2))),
    }
    for name, arr in arrays.items():
        pkg.write(f"npy/{name}.npy", f"np.save({name} array)", lambda p, a=arr: np.save(p, a))
    obj = np.array([{"a": 1}, [1, 2], "text", None, 3.5], dtype=object)
    pkg.write(
        "npy/object.npy",
        "np.save(object array, allow_pickle=True)",
        lambda p: np.save(p, obj, allow_pickle=True),
    )
    matrix = np.matrix([[1, 2], [3, 4]])
    pkg.write(
        "npy/matrix.npy", "np.save(np.matrix)", lambda p: np.save(p, matrix, allow_pickle=True)
    )
    masked = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    pkg.pickles("pickle/masked_array", masked, "np.ma.masked_array")
    pkg.pickles("pickle/matrix", matrix, "np.matrix")
    pkg.pickles("pickle/object_array", obj, "object array")
    pkg.pickles("pickle/float_array", arrays["f64"], "float64 array")
    pkg.pickles("pickle/structured", arrays["structured"], "structured array")
    pkg.pickles("pickle/recarray", np.rec.fromrecords([(1, 2.0)], names="a,b"), "np.recarray")
    pkg.pickles(
        "pickle/scalars",
        {
            "f": np.float64(1.5),
            "i": np.int64(3),
            "b": np.bool_(True),
            "dt": np.dtype("float32"),
            "d64": np.datetime64("2024-01-01"),
        },
        "numpy scalars and dtypes",
    )
    pkg.pickles("pickle/generator", np.random.default_rng(42), "np.random.Generator", range(2, 6))
    pkg.pickles(
        "pickle/random_state", np.random.RandomState(42), "np.random.RandomState", range(2, 6)
    )
    pkg.write("npz/arrays.npz", "np.savez", lambda p: np.savez(p, **arrays))
    pkg.write(
        "npz/compressed.npz",
        "np.savez_compressed",
        lambda p: np.savez_compressed(p, a=arrays["f64"], b=arrays["i32"]),
    )
    pkg.write(
        "npz/with_object.npz",
        "np.savez(object array)",
        lambda p: np.savez(p, obj=obj, matrix=matrix),
    )
    pkg.write("txt/array.txt", "np.savetxt", lambda p: np.savetxt(p, arrays["f64"]))
    pkg.write("raw/array.bin", "ndarray.tofile", lambda p: arrays["f64"].tofile(p))


@builder("pandas")
def pandas_files(pkg: Package) -> None:
    import numpy as np
    import pandas as pd

    n = 6
    df = pd.DataFrame(
        {
            "int": np.arange(n),
            "float": np.linspace(0, 1, n),
            "str": list("abcdef"),
            "cat": pd.Categorical(list("xyxyxy")),
            "bool": [True, False] * 3,
            "date": pd.date_range("2024-01-01", periods=n),
            "tz": pd.date_range("2024-01-01", periods=n, tz="Europe/Paris"),
            "delta": pd.to_timedelta(np.arange(n), unit="h"),
            "nullable": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
            "string": pd.array(list("uvwxyz"), dtype="string"),
            "period": pd.period_range("2024-01", periods=n, freq="M"),
            "interval": pd.interval_range(0, n),
        }
    )
    objects = {
        "dataframe": df,
        "dataframe_multiindex": df.set_index(["str", "int"]),
        "series": pd.Series([1.0, 2.0, np.nan], name="s"),
        "series_datetime_index": pd.Series(range(3), index=pd.date_range("2024", periods=3)),
        "range_index": pd.RangeIndex(10),
        "multiindex": pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["k", "n"]),
        "categorical": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
        "categorical_index": pd.CategoricalIndex(["a", "b", "a"]),
        "interval_index": pd.interval_range(0, 4),
        "period_index": pd.period_range("2020", periods=3, freq="Y"),
        "timestamp": pd.Timestamp("2024-05-01 12:00", tz="UTC"),
        "timedelta": pd.Timedelta("1 day"),
        "offset": pd.offsets.BDay(2),
        "sparse_frame": pd.DataFrame({"s": pd.arrays.SparseArray([0, 0, 1, 0])}),
        "groupby_agg": df.groupby("cat", observed=True)["float"].agg(["mean", "sum"]),
        "pivot": df.pivot_table(index="cat", columns="bool", values="float", observed=True),
    }
    for name, obj in objects.items():
        if hasattr(obj, "to_pickle"):
            for ext in ("pkl", "pkl.gz", "pkl.bz2", "pkl.xz"):
                pkg.write(
                    f"to_pickle/{name}.{ext}",
                    f"{type(obj).__name__}.to_pickle(.{ext})",
                    lambda p, o=obj: o.to_pickle(p),
                )
        pkg.pickles(f"pickle/{name}", obj, f"pandas {type(obj).__name__}")
        pkg.joblib(f"joblib/{name}", obj, f"pandas {type(obj).__name__}")
    pkg.write(
        "parquet/frame.parquet",
        "DataFrame.to_parquet",
        lambda p: df.drop(columns=["period", "interval"]).to_parquet(p),
    )
    pkg.write(
        "feather/frame.feather",
        "DataFrame.to_feather",
        lambda p: df.drop(columns=["period", "interval"]).to_feather(p),
    )
    pkg.write(
        "hdf/frame.h5", "DataFrame.to_hdf", lambda p: df[["int", "float"]].to_hdf(p, key="df")
    )


@builder("scipy")
def scipy_files(pkg: Package) -> None:
    import numpy as np
    import scipy
    from scipy import interpolate, io, optimize, sparse, spatial, stats

    dense = np.array([[1.0, 0, 2], [0, 0, 3], [4, 5, 0]])
    for fmt in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia"):
        mat = getattr(sparse, f"{fmt}_matrix")(dense)
        arr = getattr(sparse, f"{fmt}_array")(dense)
        pkg.pickles(f"sparse/{fmt}_matrix", mat, f"scipy.sparse.{fmt}_matrix")
        pkg.pickles(f"sparse/{fmt}_array", arr, f"scipy.sparse.{fmt}_array", range(2, 6))
        if fmt in ("csr", "csc", "coo", "bsr", "dia"):
            pkg.write(
                f"npz/{fmt}.npz", "scipy.sparse.save_npz", lambda p, m=mat: sparse.save_npz(p, m)
            )
    pts = np.random.default_rng(0).normal(size=(20, 3))
    pkg.pickles("spatial/kdtree", spatial.KDTree(pts), "scipy.spatial.KDTree")
    pkg.pickles("spatial/ckdtree", spatial.cKDTree(pts), "scipy.spatial.cKDTree")
    pkg.pickles(
        "spatial/rotation",
        spatial.transform.Rotation.from_euler("xyz", [10, 20, 30], degrees=True),
        "scipy Rotation",
        range(2, 6),
    )
    with pkg.attempt("ConvexHull"):
        pkg.pickles("spatial/convex_hull", spatial.ConvexHull(pts), "ConvexHull", range(2, 6))
    frozen = {
        "norm": stats.norm(0, 1),
        "gamma": stats.gamma(2.0, scale=1.5),
        "poisson": stats.poisson(3),
        "beta": stats.beta(2, 5),
        "mvn": stats.multivariate_normal([0, 0], [[1, 0], [0, 1]]),
    }
    for name, dist in frozen.items():
        pkg.pickles(f"stats/frozen_{name}", dist, f"frozen scipy.stats.{name}")
    pkg.pickles("stats/gaussian_kde", stats.gaussian_kde(pts[:, 0]), "gaussian_kde", range(2, 6))
    x = np.linspace(0, 1, 10)
    interps = {
        "interp1d": interpolate.interp1d(x, x**2),
        "cubic_spline": interpolate.CubicSpline(x, x**2),
        "univariate_spline": interpolate.UnivariateSpline(x, x**2),
        "bspline": interpolate.make_interp_spline(x, x**2),
        "grid": interpolate.RegularGridInterpolator((x, x), np.outer(x, x)),
    }
    for name, obj in interps.items():
        with pkg.attempt(name):
            pkg.pickles(f"interpolate/{name}", obj, f"scipy.interpolate {name}", range(2, 6))
    res = optimize.minimize(lambda v: float((v**2).sum()), np.ones(2), method="BFGS")
    res.pop("hess_inv", None)
    pkg.pickles(
        "optimize/optimize_result",
        optimize.OptimizeResult(x=res.x, fun=res.fun, success=True),
        "OptimizeResult",
        range(2, 6),
    )
    pkg.write(
        "io/matlab.mat",
        "scipy.io.savemat",
        lambda p: io.savemat(p, {"a": dense, "s": sparse.csr_matrix(dense)}),
    )
    pkg.write(
        "io/matrix.mtx", "scipy.io.mmwrite", lambda p: io.mmwrite(p, sparse.coo_matrix(dense))
    )
    del scipy


@builder("sklearn")
def sklearn_files(pkg: Package) -> None:
    import numpy as np
    from sklearn import (
        calibration,
        cluster,
        compose,
        decomposition,
        ensemble,
        feature_extraction,
        gaussian_process,
        impute,
        linear_model,
        model_selection,
        naive_bayes,
        neighbors,
        neural_network,
        pipeline,
        preprocessing,
        svm,
        tree,
    )
    from sklearn.gaussian_process import kernels

    x, y = _xy()
    xpos = np.abs(x)
    text = ["the cat sat", "the dog ran", "a cat ran", "dogs and cats"] * 3
    gp_kernel = kernels.ConstantKernel(1.0) * kernels.RBF(1.0) + kernels.WhiteKernel(0.1)
    est: dict[str, Any] = {
        "logistic": linear_model.LogisticRegression().fit(x, y),
        "ridge": linear_model.Ridge().fit(x, y),
        "random_forest": ensemble.RandomForestClassifier(10, random_state=0).fit(x, y),
        "gradient_boosting": ensemble.GradientBoostingClassifier(n_estimators=5).fit(x, y),
        "hist_gradient_boosting": ensemble.HistGradientBoostingClassifier(max_iter=5).fit(x, y),
        "isolation_forest": ensemble.IsolationForest(n_estimators=5).fit(x),
        "svc": svm.SVC(probability=True).fit(x, y),
        "kmeans": cluster.KMeans(3, n_init=2).fit(x),
        "dbscan": cluster.DBSCAN().fit(x),
        "pca": decomposition.PCA(2).fit(x),
        "decision_tree": tree.DecisionTreeClassifier().fit(x, y),
        "knn_kdtree": neighbors.KNeighborsClassifier(algorithm="kd_tree").fit(x, y),
        "knn_balltree": neighbors.KNeighborsClassifier(algorithm="ball_tree").fit(x, y),
        "mlp": neural_network.MLPClassifier((8,), max_iter=20).fit(x, y),
        "naive_bayes": naive_bayes.GaussianNB().fit(x, y),
        "gp_regressor": gaussian_process.GaussianProcessRegressor(gp_kernel).fit(x, y),
        "gp_classifier": gaussian_process.GaussianProcessClassifier(kernels.Matern(nu=1.5)).fit(
            x, y
        ),
        "function_transformer_log1p": preprocessing.FunctionTransformer(np.log1p).fit(xpos),
        "function_transformer_inverse": preprocessing.FunctionTransformer(
            np.log1p, inverse_func=np.expm1
        ).fit(xpos),
        "tfidf": feature_extraction.text.TfidfVectorizer().fit(text),
        "count_vectorizer": feature_extraction.text.CountVectorizer(ngram_range=(1, 2)).fit(text),
        "label_encoder": preprocessing.LabelEncoder().fit(["a", "b", "c"]),
        "onehot": preprocessing.OneHotEncoder(handle_unknown="ignore").fit([["a"], ["b"]]),
        "imputer": impute.SimpleImputer().fit(x),
        "calibrated": calibration.CalibratedClassifierCV(
            linear_model.LogisticRegression(), cv=3
        ).fit(x, y),
        "voting": ensemble.VotingClassifier(
            [("lr", linear_model.LogisticRegression()), ("nb", naive_bayes.GaussianNB())]
        ).fit(x, y),
        "grid_search": model_selection.GridSearchCV(
            linear_model.LogisticRegression(), {"C": [0.1, 1.0]}, cv=3
        ).fit(x, y),
        "pipeline": pipeline.make_pipeline(
            preprocessing.StandardScaler(), decomposition.PCA(2), linear_model.LogisticRegression()
        ).fit(x, y),
    }
    with pkg.attempt("column transformer"):
        import pandas as pd

        frame = pd.DataFrame({"num": x[:, 0], "cat": ["a", "b", "c"] * 20})
        ct = compose.ColumnTransformer(
            [
                ("num", preprocessing.StandardScaler(), ["num"]),
                ("cat", preprocessing.OneHotEncoder(), ["cat"]),
            ]
        )
        est["column_transformer_pipeline"] = pipeline.Pipeline(
            [("prep", ct), ("clf", linear_model.LogisticRegression())]
        ).fit(frame, y)
    for name, obj in est.items():
        pkg.pickles(f"pickle/{name}", obj, f"sklearn {type(obj).__name__}", range(2, 6))
        pkg.joblib(f"joblib/{name}", obj, f"sklearn {type(obj).__name__}")
    pkg.pickles("pickle/gp_kernel", gp_kernel, "GaussianProcess kernel")
    for compress in (("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)):
        pkg.joblib(
            "compress/random_forest",
            est["random_forest"],
            "RandomForestClassifier",
            compress=(compress,),
        )
    with pkg.attempt("skops"):
        import skops.io as sio

        pkg.write("skops/pipeline.skops", "skops.io.dump", lambda p: sio.dump(est["pipeline"], p))


@builder("joblib")
def joblib_files(pkg: Package) -> None:
    import numpy as np

    data = {
        "weights": np.random.default_rng(0).normal(size=(50, 20)),
        "ids": np.arange(100),
        "names": ["a", "b"],
        "nested": {"m": np.eye(3)},
    }
    pkg.joblib(
        "arrays/dict_of_arrays",
        data,
        "dict of numpy arrays",
        compress=(0, 1, 3, 9, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)),
    )
    pkg.joblib(
        "arrays/list_of_arrays", [np.ones(10), np.zeros((3, 3), dtype=np.float32)], "list of arrays"
    )
    pkg.joblib("arrays/object_array", np.array([1, "a", None], dtype=object), "object array")
    import joblib

    for proto in range(6):
        pkg.write(
            f"protocol/dict.p{proto}.joblib",
            f"joblib.dump(protocol={proto})",
            lambda p, proto=proto: joblib.dump(data, p, protocol=proto),
        )


@builder("statsmodels")
def statsmodels_files(pkg: Package) -> None:
    import numpy as np
    import statsmodels.api as sm
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.holtwinters import ExponentialSmoothing
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    x, y = _xy(80)
    xc = sm.add_constant(x)
    series = np.cumsum(np.random.default_rng(1).normal(size=60)) + 10
    results = {
        "ols": sm.OLS(y.astype(float), xc).fit(),
        "wls": sm.WLS(y.astype(float), xc, weights=np.ones(80)).fit(),
        "glm_binomial": sm.GLM(y, xc, family=sm.families.Binomial()).fit(),
        "glm_poisson": sm.GLM(np.abs(y), xc, family=sm.families.Poisson()).fit(),
        "logit": sm.Logit(y, xc).fit(disp=0),
        "rlm": sm.RLM(y.astype(float), xc).fit(),
        "quantreg": sm.QuantReg(y.astype(float), xc).fit(q=0.5),
        "arima": ARIMA(series, order=(1, 1, 1)).fit(),
        "sarimax": SARIMAX(series, order=(1, 0, 0)).fit(disp=False),
        "exp_smoothing": ExponentialSmoothing(series, trend="add").fit(),
    }
    for name, res in results.items():
        pkg.write(
            f"save/{name}.pickle", f"{type(res).__name__}.save()", lambda p, r=res: r.save(str(p))
        )
        pkg.write(
            f"save/{name}.remove_data.pickle",
            f"{type(res).__name__}.save(remove_data)",
            lambda p, r=res: r.save(str(p), remove_data=True),
        )
        pkg.pickles(f"pickle/{name}", res, type(res).__name__, range(2, 6))


@builder("xgboost")
def xgboost_files(pkg: Package) -> None:
    import xgboost as xgb

    x, y = _xy()
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    reg = xgb.XGBRegressor(n_estimators=5).fit(x, y)
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(x, label=y), 3)
    for name, obj in {"classifier": clf, "regressor": reg, "booster": booster}.items():
        pkg.pickles(f"pickle/{name}", obj, f"xgboost {type(obj).__name__}", range(2, 6))
        pkg.joblib(f"joblib/{name}", obj, f"xgboost {type(obj).__name__}")
    for ext in ("json", "ubj"):
        pkg.write(f"native/model.{ext}", f"save_model(.{ext})", lambda p: clf.save_model(str(p)))


@builder("lightgbm")
def lightgbm_files(pkg: Package) -> None:
    import lightgbm as lgb

    x, y = _xy()
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    booster = lgb.train({"verbose": -1, "objective": "binary"}, lgb.Dataset(x, y), 3)
    for name, obj in {"classifier": clf, "booster": booster}.items():
        pkg.pickles(f"pickle/{name}", obj, f"lightgbm {type(obj).__name__}", range(2, 6))
        pkg.joblib(f"joblib/{name}", obj, f"lightgbm {type(obj).__name__}")
    pkg.write("native/model.txt", "Booster.save_model", lambda p: booster.save_model(str(p)))


@builder("catboost")
def catboost_files(pkg: Package) -> None:
    import catboost

    x, y = _xy()
    clf = catboost.CatBoostClassifier(iterations=5, verbose=False, allow_writing_files=False)
    clf.fit(x, y)
    reg = catboost.CatBoostRegressor(iterations=5, verbose=False, allow_writing_files=False)
    reg.fit(x, y)
    for name, obj in {"classifier": clf, "regressor": reg}.items():
        pkg.pickles(f"pickle/{name}", obj, f"catboost {type(obj).__name__}", range(2, 6))
        pkg.joblib(f"joblib/{name}", obj, f"catboost {type(obj).__name__}")
    pkg.write("native/model.cbm", "save_model(.cbm)", lambda p: clf.save_model(str(p)))
    pkg.write(
        "native/model.onnx",
        "save_model(format='onnx')",
        lambda p: clf.save_model(str(p), format="onnx"),
    )


@builder("imblearn")
def imblearn_files(pkg: Package) -> None:
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression

    x, y = _xy()
    pipe = make_pipeline(SMOTE(random_state=0), LogisticRegression()).fit(x, y)
    pkg.pickles("smote_pipeline", pipe, "imblearn Pipeline(SMOTE, LogisticRegression)", range(2, 6))
    pkg.joblib("smote_pipeline", pipe, "imblearn pipeline")


@builder("category_encoders")
def category_encoders_files(pkg: Package) -> None:
    import category_encoders as ce
    import pandas as pd

    frame = pd.DataFrame({"c": list("abcabcabca"), "d": list("xxyyxxyyxx")})
    y = [0, 1, 0, 1, 1, 0, 1, 0, 0, 1]
    for name, enc in {
        "target": ce.TargetEncoder(),
        "onehot": ce.OneHotEncoder(),
        "binary": ce.BinaryEncoder(),
    }.items():
        enc.fit(frame, y)
        pkg.pickles(f"{name}_encoder", enc, f"category_encoders {type(enc).__name__}", range(2, 6))


@builder("lifelines")
def lifelines_files(pkg: Package) -> None:
    import numpy as np
    import pandas as pd
    from lifelines import CoxPHFitter, KaplanMeierFitter

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"T": rng.exponential(5, 40), "E": rng.integers(0, 2, 40), "age": rng.normal(50, 10, 40)}
    )
    km = KaplanMeierFitter().fit(frame["T"], frame["E"])
    cox = CoxPHFitter().fit(frame, "T", "E")
    for name, obj in {"kaplan_meier": km, "coxph": cox}.items():
        pkg.pickles(name, obj, f"lifelines {type(obj).__name__}", range(2, 6))


@builder("optuna")
def optuna_files(pkg: Package) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2, n_trials=5)
    pkg.pickles("study", study, "optuna Study (in-memory storage)", range(2, 6))
    pkg.joblib("study", study, "optuna Study")
    pkg.pickles("tpe_sampler", optuna.samplers.TPESampler(seed=1), "TPESampler", range(2, 6))
    pkg.pickles("best_trial", study.best_trial, "FrozenTrial", range(2, 6))


@builder("pyarrow")
def pyarrow_files(pkg: Package) -> None:
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    table = pa.table(
        {"a": [1, 2, 3], "b": ["x", "y", "z"], "c": pa.array([dt.date(2024, 1, 1)] * 3)}
    )
    pkg.pickles("table", table, "pyarrow Table", range(2, 6))
    pkg.pickles("record_batch", table.to_batches()[0], "RecordBatch", range(2, 6))
    pkg.pickles("schema", table.schema, "Schema", range(2, 6))
    pkg.write("table.parquet", "pq.write_table", lambda p: pq.write_table(table, p))
    pkg.write("table.feather", "feather.write_feather", lambda p: feather.write_feather(table, p))


@builder("polars")
def polars_files(pkg: Package) -> None:
    import polars as pl

    frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [1.5, None, 2.0]})
    pkg.pickles("dataframe", frame, "polars DataFrame", range(2, 6))
    pkg.pickles("series", frame["a"], "polars Series", range(2, 6))
    pkg.write("frame.parquet", "write_parquet", lambda p: frame.write_parquet(p))
    pkg.write("frame.ipc", "write_ipc", lambda p: frame.write_ipc(p))


@builder("xarray")
def xarray_files(pkg: Package) -> None:
    import numpy as np
    import pandas as pd
    import xarray as xr

    ds = xr.Dataset(
        {"temp": (("time", "loc"), np.random.default_rng(0).normal(size=(4, 3)))},
        coords={"time": pd.date_range("2024-01-01", periods=4), "loc": ["a", "b", "c"]},
        attrs={"source": "sensor"},
    )
    pkg.pickles("dataset", ds, "xarray Dataset")
    pkg.pickles("dataarray", ds["temp"], "xarray DataArray", range(2, 6))
    pkg.joblib("dataset", ds, "xarray Dataset")
    with pkg.attempt("netcdf"):
        pkg.write("dataset.nc", "Dataset.to_netcdf", lambda p: ds.to_netcdf(p))


@builder("astropy")
def astropy_files(pkg: Package) -> None:
    import astropy.units as u
    from astropy.table import Table
    from astropy.time import Time

    pkg.pickles("quantity", 3.0 * u.m / u.s, "astropy Quantity", range(2, 6))
    pkg.pickles("table", Table({"a": [1, 2], "b": [0.5, 1.5]}), "astropy Table", range(2, 6))
    pkg.pickles("time", Time("2024-01-01T00:00:00"), "astropy Time", range(2, 6))


@builder("networkx")
def networkx_files(pkg: Package) -> None:
    import networkx as nx

    graphs = {
        "karate": nx.karate_club_graph(),
        "digraph": nx.gn_graph(20, seed=0),
        "multigraph": nx.MultiGraph([(0, 1), (0, 1), (1, 2)]),
    }
    for name, graph in graphs.items():
        pkg.pickles(name, graph, f"networkx {type(graph).__name__}")
    pkg.write("karate.graphml", "nx.write_graphml", lambda p: nx.write_graphml(graphs["karate"], p))


@builder("sympy")
def sympy_files(pkg: Package) -> None:
    import sympy as sp

    x, y = sp.symbols("x y")
    pkg.pickles("expression", sp.sin(x) ** 2 + sp.exp(y) / 3, "sympy expression", range(2, 6))
    pkg.pickles("matrix", sp.Matrix([[x, 1], [0, y]]), "sympy Matrix", range(2, 6))


@builder("matplotlib")
def matplotlib_files(pkg: Package) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 4, 9], label="sq")
    ax.legend()
    pkg.pickles("figure", fig, "matplotlib Figure", range(2, 6))
    pkg.pickles("colormap", matplotlib.colormaps["viridis"], "Colormap", range(2, 6))
    plt.close(fig)


@builder("dill")
def dill_files(pkg: Package) -> None:
    import dill
    import numpy as np

    data = {"weights": np.ones(3), "names": ["a"], "nested": {"k": (1, 2)}}
    for proto in range(6):
        pkg.write(
            f"data.p{proto}.dill",
            f"dill.dump(dict of data, protocol={proto})",
            lambda p, proto=proto: p.write_bytes(dill.dumps(data, protocol=proto)),
        )


@builder("cloudpickle")
def cloudpickle_files(pkg: Package) -> None:
    import cloudpickle
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _xy()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    for proto in range(2, 6):
        pkg.write(
            f"pipeline.p{proto}.pkl",
            f"cloudpickle.dump(sklearn pipeline, protocol={proto})",
            lambda p, proto=proto: p.write_bytes(cloudpickle.dumps(pipe, protocol=proto)),
        )


@builder("skimage")
def skimage_files(pkg: Package) -> None:
    import numpy as np
    from skimage import transform

    pkg.pickles(
        "affine",
        transform.AffineTransform(scale=(2, 2), rotation=0.3),
        "AffineTransform",
        range(2, 6),
    )
    src = np.array([[0, 0], [0, 1], [1, 1], [1, 0]], dtype=float)
    pkg.pickles(
        "projective",
        transform.estimate_transform("projective", src, src * 2),
        "ProjectiveTransform",
        range(2, 6),
    )


@builder("pmdarima")
def pmdarima_files(pkg: Package) -> None:
    import joblib
    import numpy as np
    import pmdarima as pm

    series = np.cumsum(np.random.default_rng(0).normal(size=60)) + 10
    model = pm.auto_arima(series, seasonal=False, max_p=2, max_q=2, suppress_warnings=True)
    pkg.pickles("auto_arima", model, "pmdarima auto_arima", range(2, 6))
    pkg.write("auto_arima.joblib", "joblib.dump(auto_arima)", lambda p: joblib.dump(model, p))


@builder("sktime")
def sktime_files(pkg: Package) -> None:
    import numpy as np
    import pandas as pd
    from sktime.forecasting.naive import NaiveForecaster
    from sktime.forecasting.theta import ThetaForecaster

    y = pd.Series(np.arange(30.0) + 5, index=pd.period_range("2020-01", periods=30, freq="M"))
    for name, fc in {
        "naive": NaiveForecaster(strategy="last"),
        "theta": ThetaForecaster(sp=12),
    }.items():
        fc.fit(y)
        pkg.pickles(name, fc, f"sktime {type(fc).__name__}", range(2, 6))
        with pkg.attempt(f"{name} save"):
            fc.save(str(pkg.path(f"{name}_saved")))
            pkg.record(f"{name}_saved.zip", "BaseObject.save()")


@builder("pgmpy")
def pgmpy_files(pkg: Package) -> None:
    import pandas as pd

    try:
        from pgmpy.models import DiscreteBayesianNetwork as Network
    except ImportError:
        from pgmpy.models import BayesianNetwork as Network

    data = pd.DataFrame({"a": [0, 1, 0, 1, 1], "b": [1, 1, 0, 0, 1], "c": [0, 1, 1, 0, 1]})
    model = Network([("a", "b"), ("b", "c")])
    model.fit(data)
    pkg.pickles("bayesian_network", model, "pgmpy Bayesian network", range(2, 6))


@builder("prophet")
def prophet_files(pkg: Package) -> None:
    import logging

    import numpy as np
    import pandas as pd
    from prophet import Prophet
    from prophet.serialize import model_to_json

    logging.getLogger("cmdstanpy").setLevel(logging.ERROR)
    frame = pd.DataFrame(
        {"ds": pd.date_range("2023-01-01", periods=60), "y": np.sin(np.arange(60) / 5) + 10}
    )
    model = Prophet(daily_seasonality=False, weekly_seasonality=True).fit(frame)
    pkg.pickles("prophet", model, "Prophet (fitted)", range(2, 6))
    pkg.write(
        "prophet.json",
        "prophet.serialize.model_to_json",
        lambda p: p.write_text(model_to_json(model)),
    )
