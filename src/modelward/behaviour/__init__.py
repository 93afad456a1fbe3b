"""Behavioural checks: backdoored models and poisoned data (MITRE ATLAS AML.M0008).

Needs the optional extra: `pip install 'modelward[behaviour]'` (torch). Unlike the static
scanner these checks *run* the model, so scan a model file statically first:
`load_after_static_scan` does that (scan, refuse on findings, then load a TorchScript model
and its npz data). Names resolve on first use, so importing this package (or `modelward`)
never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelward._lazy import lazy_exports

_LAZY = {
    "scan_model": "modelward.behaviour.model_scan",
    "ModelVerdict": "modelward.behaviour.model_scan",
    "LabelResult": "modelward.behaviour.model_scan",
    "ScanSettings": "modelward.behaviour.model_scan",
    "calibrate": "modelward.behaviour.model_scan",
    "model_scores": "modelward.behaviour.model_scan",
    "DEFAULT_THRESHOLD": "modelward.behaviour.model_scan",
    "Strip": "modelward.behaviour.strip",
    "scan_data": "modelward.behaviour.data_scan",
    "DataVerdict": "modelward.behaviour.data_scan",
    "DataScanSettings": "modelward.behaviour.data_scan",
    "scan_text_dataset": "modelward.behaviour.text_scan",
    "TextDatasetScan": "modelward.behaviour.text_scan",
    "TextScanSettings": "modelward.behaviour.text_scan",
    "load_after_static_scan": "modelward.behaviour.guard",
    "BehaviourInputs": "modelward.behaviour.guard",
    "BehaviourInputError": "modelward.behaviour.guard",
    "StaticScanRefusal": "modelward.behaviour.guard",
}

if TYPE_CHECKING:
    from modelward.behaviour.data_scan import DataScanSettings, DataVerdict, scan_data
    from modelward.behaviour.guard import (
        BehaviourInputError,
        BehaviourInputs,
        StaticScanRefusal,
        load_after_static_scan,
    )
    from modelward.behaviour.model_scan import (
        DEFAULT_THRESHOLD,
        LabelResult,
        ModelVerdict,
        ScanSettings,
        calibrate,
        model_scores,
        scan_model,
    )
    from modelward.behaviour.strip import Strip
    from modelward.behaviour.text_scan import TextDatasetScan, TextScanSettings, scan_text_dataset


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all __getattr__
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_THRESHOLD",
    "BehaviourInputError",
    "BehaviourInputs",
    "DataScanSettings",
    "DataVerdict",
    "LabelResult",
    "ModelVerdict",
    "ScanSettings",
    "StaticScanRefusal",
    "Strip",
    "TextDatasetScan",
    "TextScanSettings",
    "calibrate",
    "load_after_static_scan",
    "model_scores",
    "scan_data",
    "scan_model",
    "scan_text_dataset",
]
