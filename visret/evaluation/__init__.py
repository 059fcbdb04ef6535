"""How well features retrieve and classify: k-NN evaluation on held-out images, comparisons of
extractors, the tuner and the recipes it writes, leaderboards, and the metrics behind them."""

from visret.evaluation._comparison import Comparison, compare
from visret.evaluation._knn import KnnReport, evaluate_features, evaluate_knn
from visret.evaluation._leaderboard import Leaderboard
from visret.evaluation._protocols import stratified_folds, stratified_test_mask
from visret.evaluation._recipe import Recipe, read_recipe
from visret.evaluation._tuning import Tuner, TuningResult, tune

__all__ = ["Comparison", "KnnReport", "Leaderboard", "Recipe", "Tuner", "TuningResult", "compare", "evaluate_features",
           "evaluate_knn", "read_recipe", "stratified_folds", "stratified_test_mask", "tune"]
