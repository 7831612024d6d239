"""Analysis of experiments: collect results, significance tests, paper tables, figures, reports."""

from glintru.analysis.collect import (
    Experiment,
    Results,
    best_configs,
    collect,
    config_columns,
    experiment_paths,
    metric_columns,
    open_experiment,
    select_best,
    tested,
)
from glintru.analysis.comparability import ComparabilityError
from glintru.analysis.stats import (
    Comparison,
    SignificanceError,
    compare,
    holm,
    paired_ttest,
    param_importances,
    welch_ttest,
    wilcoxon_test,
)
from glintru.analysis.tables import (
    EfficiencyTable,
    PerformanceTable,
    ablation_table,
    efficiency_table,
    performance_table,
)

__all__ = [
    "Experiment",
    "Results",
    "collect",
    "experiment_paths",
    "open_experiment",
    "select_best",
    "tested",
    "best_configs",
    "config_columns",
    "metric_columns",
    "Comparison",
    "ComparabilityError",
    "SignificanceError",
    "compare",
    "holm",
    "paired_ttest",
    "welch_ttest",
    "wilcoxon_test",
    "param_importances",
    "PerformanceTable",
    "EfficiencyTable",
    "performance_table",
    "efficiency_table",
    "ablation_table",
]
