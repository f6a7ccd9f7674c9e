"""scikit-learn's own estimator checks on the five detectors (issue 12).

Every check runs; the ones that fail by design are listed below with the reason, and
``parametrize_with_checks`` fails the suite if any of them starts passing (then it should leave the
list) or if any other check fails. LatentDistance, the detector that takes 2-D tables, passes all
but four; the image detectors fail every check that fits on a 2-D table, because they take
images; the series detectors read rows as time steps, so order-invariance checks cannot hold.
"""
from sklearn.utils.estimator_checks import parametrize_with_checks

import anomalib_lite as al

#: conventions chosen on purpose (README, "Scores and labels")
CONVENTIONS = {
    "check_outliers_fit_predict": "predict gives PyOD's labels (1 = anomaly, 0 = normal), not scikit-learn's +1/-1",
    "check_outliers_train": "predict gives PyOD's labels (1 = anomaly, 0 = normal), not scikit-learn's +1/-1",
    "check_fit_score_takes_y": "score(X, y) reads y as 0/1 anomaly labels (it returns the ROC-AUC); the check passes classes",
    "check_dtype_object": "an object array holding a dict raises the package's one error class (a ValueError), not TypeError",
}
#: checks that fit on 2-D tables: the image detectors refuse them in one line ("takes images")
TABLE_CHECKS = [
    "check_classifier_data_not_an_array", "check_dict_unchanged", "check_dont_overwrite_parameters",
    "check_estimators_dtypes", "check_estimators_fit_returns_self", "check_estimators_nan_inf",
    "check_estimators_overwrite_params", "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_fit2d_1feature", "check_fit2d_1sample", "check_fit2d_predict1d", "check_fit_check_is_fitted",
    "check_fit_idempotent", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_n_features_in", "check_n_features_in_after_fitting", "check_pipeline_consistency",
    "check_positive_only_tag_during_fit", "check_readonly_memmap_input",
]
SERIES = {
    "check_fit1d": "a 1-D array is a series of one channel, not an error",
    "check_fit2d_predict1d": "a 1-D array is a series of one channel, not an error",
    "check_fit2d_1sample": "one step is refused as shorter than the window (the message names the window)",
    "check_methods_sample_order_invariance": "rows are time steps: their order is the data",
    "check_methods_subset_invariance": "rows are time steps: a step's score depends on the steps before it",
    "check_n_features_in_after_fitting": "a series with other channels is refused by the series' own message",
}
#: checks whose y is not 0/1 labels per step, or absent: the supervised detector needs them
LABEL_CHECKS = [
    "check_classifier_data_not_an_array", "check_dict_unchanged", "check_dont_overwrite_parameters",
    "check_estimator_sparse_array", "check_estimator_sparse_matrix", "check_estimator_sparse_tag",
    "check_estimators_dtypes", "check_estimators_fit_returns_self", "check_estimators_overwrite_params",
    "check_f_contiguous_array_estimator", "check_fit2d_1feature", "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
]


def expected_failures(est) -> dict[str, str]:
    out = dict(CONVENTIONS)
    if est.input_kind == "image":
        out.update({c: "takes images (N, C, H, W); the check fits on a 2-D table" for c in TABLE_CHECKS})
    if est.input_kind == "series":
        out.update(SERIES)
        if not est.capabilities.calibrates:
            del out["check_fit1d"]  # refused for its missing labels: the check passes
    if not est.capabilities.calibrates:  # learns from labels
        out.update({c: "learns from 0/1 labels per time step; the check passes classes or no labels" for c in LABEL_CHECKS})
    return out


#: every registered detector, with its quick parameters
ESTIMATORS = [cls(**{**cls.quick_params, "device": "cpu", "contamination": 0.1}) for cls in al.DETECTORS.values()]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_scikit_learn_checks(estimator, check):
    check(estimator)
