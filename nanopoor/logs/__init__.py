"""log parsers: every supported format read into one shape (model.py), chosen by registry.py."""
from nanopoor.logs.model import ParsedLog, ParsedRun, StepPoint  # noqa: F401
from nanopoor.logs.registry import PARSERS, detect_format, parse_log, parse_text, parser_names  # noqa: F401
