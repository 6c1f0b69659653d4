"""The shape every refused command must have (issue 10): exit 2 and one line on stderr, starting
``memadv: error:`` and naming what was wrong. Shared by the safety tests (imported by module name:
pytest puts this folder on sys.path, the tests have no package)."""


def assert_one_line_refusal(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("memadv: error:"), err
    for w in words:
        assert w in err, err
