"""Everything specific to the embedded digits task, in one place: the data (scikit-learn's 1,797 8x8 digits) and
its reference set, the small classifier whose features and predictions score samples, and that feature
extractor. The configs name these through `_target_` (conf/data/digits.yaml, conf/eval/digits.yaml,
conf/eval/ref_source/digits.yaml); the recipe is conf/experiment/digits.yaml. Generic code does not import it."""
