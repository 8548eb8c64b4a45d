"""Studies: files (:mod:`.files`), validation (:mod:`.parse`), the spec (:mod:`.spec`) and search
spaces (:mod:`.space`)."""
from tuner.study.files import ENV_STUDIES_DIR, builtin_studies_dir, find_study_file, list_study_files, studies_dirs
from tuner.study.parse import PRUNERS, SAMPLERS, TASKS, load_spec, parse_spec
from tuner.study.space import LossChoice, Param, SearchSpace, is_empty_draw, search_keys
from tuner.study.spec import METRICS, MUTABLE_KEYS, PrunerSpec, StudySpec, cell_key

__all__ = [
    "ENV_STUDIES_DIR", "METRICS", "MUTABLE_KEYS", "PRUNERS", "SAMPLERS", "TASKS", "LossChoice", "Param",
    "PrunerSpec", "SearchSpace", "StudySpec", "builtin_studies_dir", "cell_key", "find_study_file",
    "is_empty_draw", "list_study_files", "load_spec", "parse_spec", "search_keys", "studies_dirs",
]
