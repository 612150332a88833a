"""The bundled app catalog, its loader and the risk score formula."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from enforcer.catalog import (
    CATEGORIES,
    App,
    Catalog,
    CatalogError,
    RiskAttributes,
    UnknownAppError,
    explain_risk,
    facts_known,
    load_apps,
    load_catalog,
    risk_score,
)
from enforcer.catalog.loader import DATA_DIR, GENERATED
from enforcer.catalog.risk import FACT_NAMES, FACTORS, risk_factors

SAFEST = RiskAttributes(
    founded=2000,
    hq_country="DE",
    encryption_at_rest=True,
    mfa=True,
    sso=True,
    soc2=True,
    iso27001=True,
    gdpr=True,
    recent_breach=False,
    anonymous_use=False,
)
RISKIEST = RiskAttributes(
    founded=2025,
    hq_country="CN",
    encryption_at_rest=False,
    mfa=False,
    sso=False,
    soc2=False,
    iso27001=False,
    gdpr=False,
    recent_breach=True,
    anonymous_use=True,
)

# Shared infrastructure that serves many unrelated apps: only the app that *is* the
# infrastructure may list it (None: no app may).
SHARED_INFRASTRUCTURE = {
    "amazonaws.com": "aws",
    "cloudfront.net": "amazon-cloudfront",
    "akamaized.net": "akamai",
    "akamaihd.net": "akamai",
    "akamaiedge.net": "akamai",
    "edgekey.net": "akamai",
    "edgesuite.net": "akamai",
    "fastly.net": "fastly",
    "cloudflare.net": "cloudflare",
    "azureedge.net": "microsoft-azure",
    "windows.net": "microsoft-azure",
    "googleapis.com": None,
    "gstatic.com": None,
    "googleusercontent.com": None,
    "google.com": None,
    "microsoft.com": None,
    "live.com": None,
    "microsoftonline.com": None,
    "apple.com": None,
    "amazon.com": None,
    "github.io": "github",
    "githubusercontent.com": "github",
    "herokuapp.com": "heroku",
    "blob.core.windows.net": None,
}


def app(**fields: object) -> App:
    values: dict[str, object] = {
        "id": "acme-share",
        "name": "Acme Share",
        "vendor": "Acme Ltd.",
        "category": "file-sharing",
        "domains": ["acme-share.example"],
    }
    values.update(fields)
    return App.model_validate(values)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# --- the bundled data -----------------------------------------------------------------------


def test_bundled_catalog_has_at_least_1500_apps_with_valid_categories(catalog: Catalog) -> None:
    assert len(catalog) >= 1_500
    assert {a.category for a in catalog} == set(CATEGORIES)
    assert list(catalog.apps) == sorted(catalog.apps)


def test_each_data_file_holds_one_category_named_like_the_file() -> None:
    hand_written = sorted(DATA_DIR.glob("*.yaml"))
    generated = sorted((DATA_DIR / GENERATED).glob("*.yaml"))
    assert {f.stem for f in hand_written} <= set(CATEGORIES)
    assert {f.stem for f in hand_written + generated} == set(CATEGORIES)
    for path in hand_written + generated:
        assert {a.category for a in load_apps(path)} == {path.stem}, path


def test_every_app_has_a_domain_and_a_category_and_shares_domains_only_with_a_reason(
    catalog: Catalog,
) -> None:
    for a in catalog:
        assert a.domains and a.category in CATEGORIES, a.id
    for domain, owners in catalog.domain_owners().items():
        if len(owners) > 1:
            for owner in owners:
                assert catalog.get(owner).shared.get(domain), (domain, owner)


def test_generated_apps_state_no_fact_without_its_source(catalog: Catalog) -> None:
    generated = [
        app for path in sorted((DATA_DIR / GENERATED).glob("*.yaml")) for app in load_apps(path)
    ]
    assert len(generated) >= 900
    for a in generated:
        known = {name for name in FACT_NAMES if getattr(a.risk, name) is not None}
        assert set(a.risk.sources) == known, a.id
        assert a.vendor == "unknown" and "v2fly/domain-list-community" in a.description
    cerebras = catalog.get("cerebras")
    assert (cerebras.score, facts_known(cerebras)) == (5.0, "0 of 10 facts known")
    assert facts_known(catalog.get("dropbox")) == "10 of 10 facts known"


def test_a_fact_source_must_name_a_known_fact() -> None:
    sourced = RiskAttributes(mfa=True, sources={"mfa": "https://example.com/security"})
    assert (sourced.known, facts_known(sourced)) == (1, "1 of 10 facts known")
    with pytest.raises(ValidationError, match="'mfa' has a source but no value"):
        RiskAttributes(sources={"mfa": "https://example.com"})
    with pytest.raises(ValidationError, match="'colour' is not a fact"):
        RiskAttributes(sources={"colour": "https://example.com"})


def test_a_shared_domain_must_be_one_of_the_apps_domains() -> None:
    assert app(shared={"acme-share.example": "why"}).shared == {"acme-share.example": "why"}
    with pytest.raises(ValidationError, match=r"'other\.example' is not one of the app's"):
        app(shared={"other.example": "why"})


NAMED_IN_THE_ISSUE = """
    dropbox box wetransfer mega pcloud google-drive onedrive icloud mediafire send-anywhere smash
    filemail chatgpt claude gemini microsoft-copilot perplexity mistral-le-chat deepseek
    character-ai poe hugging-face midjourney pastebin ghostbin rentry hastebin github-gist nordvpn
    expressvpn protonvpn surfshark psiphon tor-project hola cloudflare-warp teamviewer anydesk
    splashtop ngrok localtunnel slack microsoft-teams discord telegram whatsapp signal wechat zoom
    webex facebook instagram tiktok x-twitter linkedin reddit github gitlab bitbucket npm pypi
    notion evernote trello asana salesforce hubspot gmail outlook proton-mail yahoo-mail mail-ru
    youtube netflix twitch spotify steam
"""


def test_apps_the_issue_names_are_in_the_catalog(catalog: Catalog) -> None:
    for app_id in NAMED_IN_THE_ISSUE.split():
        assert app_id in catalog, app_id


def test_public_doh_resolvers_are_apps_of_their_category(catalog: Catalog) -> None:
    for name in (
        "cloudflare-dns.com",
        "dns.google",
        "dns.quad9.net",
        "doh.opendns.com",
        "dns.nextdns.io",
        "dns.adguard-dns.com",
        "doh.cleanbrowsing.org",
        "dns.mullvad.net",
    ):
        # The most specific owner comes first: dns.mullvad.net is Mullvad DNS, below Mullvad VPN.
        assert catalog.apps_for_domain(name)[0].category == "dns-over-https", name


def test_shared_infrastructure_is_only_listed_by_the_app_that_is_it(catalog: Catalog) -> None:
    owners = catalog.domain_owners()
    for domain, allowed in SHARED_INFRASTRUCTURE.items():
        listed_by = owners.get(domain, ())
        assert listed_by in ((), (allowed,)), (domain, listed_by)


def test_domains_are_tidy(catalog: Catalog) -> None:
    for a in catalog:
        assert 1 <= len(a.domains) <= 15, a.id
        for domain in a.domains:
            parents = {domain.split(".", i)[-1] for i in range(1, domain.count(".") + 1)}
            # A domain covers its subdomains, so listing one under another is noise.
            assert not parents & set(a.domains), (a.id, domain)


def test_bundled_apps_have_a_website_description_and_are_not_custom(catalog: Catalog) -> None:
    for a in catalog:
        assert a.website.startswith("https://"), a.id
        assert a.description, a.id
        assert not a.custom


def test_shared_domains_are_few_and_known(catalog: Catalog) -> None:
    shared = {d: ids for d, ids in catalog.domain_owners().items() if len(ids) > 1}
    assert shared == {
        "atlassian.com": ("confluence", "jira"),
        "atlassian.net": ("confluence", "jira"),
    }


def test_the_docs_state_the_catalog_size(catalog: Catalog) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "catalog.md").read_text(encoding="utf-8")
    assert f"**{len(catalog)} apps in {len(CATEGORIES)} categories**" in docs
    deepseek = catalog.get("deepseek")
    assert f'>>> catalog.get("deepseek").score\n{deepseek.score}\n' in docs


def test_bundled_errors_name_the_file_from_the_repository_root() -> None:
    from enforcer.catalog.loader import _display

    assert _display(DATA_DIR / "paste.yaml") == "enforcer/catalog/data/paste.yaml"


def test_bundled_catalog_is_cached() -> None:
    assert load_catalog() is load_catalog()


def test_the_bundled_files_parse_is_kept_for_the_next_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enforcer.catalog import loader

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh = list(loader._load_dir(DATA_DIR, parse_cache=True))
    [cache] = (tmp_path / "enforcer").glob("catalog-*.json")
    with monkeypatch.context() as patched:
        patched.setattr(loader, "_parse", lambda *_: pytest.fail("parsed again"))
        assert list(loader._load_dir(DATA_DIR, parse_cache=True)) == fresh
    cache.write_text('[{"not": "a list of apps"}]')  # damaged: ignored, parsed and written again
    assert list(loader._load_dir(DATA_DIR, parse_cache=True)) == fresh
    assert cache.read_text().startswith("[[")


# --- the risk score -------------------------------------------------------------------------


def test_score_bounds() -> None:
    assert risk_score(SAFEST) == 0.0
    assert risk_score(RISKIEST) == 10.0
    assert risk_score(RiskAttributes()) == 5.0


@pytest.mark.parametrize(
    ("field", "risky", "weight"),
    [
        ("recent_breach", True, 2.0),
        ("mfa", False, 1.5),
        ("encryption_at_rest", False, 1.0),
        ("sso", False, 1.0),
        ("gdpr", False, 1.0),
        ("hq_country", "RU", 1.0),
        ("anonymous_use", True, 0.5),
        ("founded", 2024, 0.5),
    ],
)
def test_each_factor_adds_its_weight_and_half_when_unknown(
    field: str, risky: object, weight: float
) -> None:
    assert risk_score(SAFEST.model_copy(update={field: risky})) == weight
    assert risk_score(SAFEST.model_copy(update={field: None})) == round(weight / 2 + 1e-9, 1)


def test_unknown_weights_are_exactly_half() -> None:
    # A 0.5 weight gives 0.25 when unknown, which the one-decimal score rounds half up.
    points = {f.reason: f.points for f in risk_factors(RiskAttributes())}
    assert points["anonymous use unknown"] == 0.25
    assert points["founding year unknown"] == 0.25
    assert risk_score(SAFEST.model_copy(update={"founded": None})) == 0.3


@pytest.mark.parametrize(
    ("soc2", "iso27001", "points"),
    [
        (True, None, 0.0),
        (None, True, 0.0),
        (True, False, 0.0),
        (False, False, 1.5),
        (None, None, 0.75),
        (False, None, 0.75),
    ],
)
def test_audit_factor_needs_one_certificate(
    soc2: bool | None, iso27001: bool | None, points: float
) -> None:
    attrs = SAFEST.model_copy(update={"soc2": soc2, "iso27001": iso27001})
    assert sum(f.points for f in risk_factors(attrs)) == points


@pytest.mark.parametrize(
    ("country", "points"), [("US", 0.0), ("GB", 0.0), ("CH", 0.0), ("FR", 0.0), ("CN", 1.0)]
)
def test_jurisdiction_follows_eu_adequacy(country: str, points: float) -> None:
    assert risk_score(SAFEST.model_copy(update={"hq_country": country})) == points


def test_young_vendor_is_founded_within_three_years_of_the_review() -> None:
    assert risk_score(SAFEST.model_copy(update={"founded": 2023})) == 0.0
    assert risk_score(SAFEST.model_copy(update={"founded": 2024})) == 0.5


def test_weights_sum_to_ten() -> None:
    assert len(FACTORS) == 9
    assert sum(f.points for f in risk_factors(RISKIEST)) == 10.0


def test_explain_risk_names_each_contribution() -> None:
    attrs = SAFEST.model_copy(update={"mfa": False, "sso": None, "hq_country": "CN"})
    assert explain_risk(attrs) == [
        "no MFA support: +1.5",
        "enterprise SSO unknown: +0.5",
        "headquartered in CN, without EU adequacy decision: +1.0",
    ]
    assert explain_risk(SAFEST) == []


def test_explained_points_add_up_to_the_score_of_every_bundled_app(catalog: Catalog) -> None:
    for a in catalog:
        points = [float(reason.rsplit("+", 1)[1]) for reason in explain_risk(a)]
        assert round(sum(points) + 1e-9, 1) == a.score == risk_score(a.risk), a.id
        assert 0.0 <= a.score <= 10.0


def test_the_riskiest_bundled_apps_are_plausible(catalog: Catalog) -> None:
    assert catalog.get("deepseek").score > catalog.get("chatgpt").score
    assert catalog.get("pastebin").score > catalog.get("github-gist").score
    assert catalog.get("box").score < 2.0


# --- the model ------------------------------------------------------------------------------


def test_domains_are_normalized() -> None:
    a = app(domains=["Files.Example.COM.", "bücher.example"])
    assert a.domains == ("files.example.com", "xn--bcher-kva.example")


@pytest.mark.parametrize("bad", ["localhost", "a..example", "-bad.example", "sp ace.example", ""])
def test_a_bad_domain_is_named_in_the_error(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        app(domains=["ok.example", bad])
    assert repr(bad) in str(caught.value)


def test_a_domain_listed_twice_is_an_error() -> None:
    with pytest.raises(ValidationError, match=r"'twice\.example' is listed twice"):
        app(domains=["twice.example", "TWICE.example."])


def test_app_rejects_unknown_fields_categories_and_ids() -> None:
    with pytest.raises(ValidationError, match="extra"):
        app(colour="red")
    with pytest.raises(ValidationError, match="not one of"):
        app(category="filesharing")
    with pytest.raises(ValidationError):
        app(id="Not A Slug")
    with pytest.raises(ValidationError, match="alpha-2"):
        RiskAttributes(hq_country="Germany")


def test_app_is_frozen() -> None:
    a = app()
    with pytest.raises(ValidationError):
        a.name = "Other"  # type: ignore[misc]


def test_country_codes_are_upper_cased() -> None:
    assert RiskAttributes(hq_country="de").hq_country == "DE"


# --- querying the catalog -------------------------------------------------------------------


def test_search_ranks_exact_then_prefix_then_substring(catalog: Catalog) -> None:
    assert catalog.search("dropbox")[0].id == "dropbox"
    assert catalog.search("DropBox")[0].id == "dropbox"
    assert "dropbox-sign" in [a.id for a in catalog.search("dropbox")]
    found = [a.id for a in catalog.search("github")]
    assert found[0] == "github"
    # Prefix matches (in id order) come before "digitalocean"-like substring matches.
    assert found[1:4] == ["github-codespaces", "github-copilot", "github-gist"]
    found = [a.id for a in catalog.search("git")]
    assert found.index("gitlab") < found.index("digitalocean")
    assert catalog.search("zoom.us")[0].id == "zoom"
    assert catalog.search("  ") == []


def test_search_matches_vendor_category_and_domain(catalog: Catalog) -> None:
    assert "claude" in [a.id for a in catalog.search("anthropic")]
    assert {a.category for a in catalog.search("dns-over-https")} == {"dns-over-https"}
    assert catalog.search("dropboxusercontent")[0].id == "dropbox"


def test_get_unknown_app_suggests_close_ids(catalog: Catalog) -> None:
    with pytest.raises(UnknownAppError) as caught:
        catalog.get("dropbx")
    assert caught.value.app_id == "dropbx"
    assert "dropbox" in caught.value.suggestions
    assert (
        str(caught.value)
        == f"unknown app 'dropbx'; did you mean {', '.join(caught.value.suggestions)}?"
    )
    assert isinstance(caught.value, KeyError)


def test_get_and_contains(catalog: Catalog) -> None:
    assert catalog.get("slack").name == "Slack"
    assert "slack" in catalog
    assert "no-such-app" not in catalog
    assert len(list(catalog)) == len(catalog)


def test_apps_for_domain_uses_subdomain_semantics(catalog: Catalog) -> None:
    assert [a.id for a in catalog.apps_for_domain("dropbox.com")] == ["dropbox"]
    assert [a.id for a in catalog.apps_for_domain("DL.DropboxUserContent.COM.")] == ["dropbox"]
    # The most specific owner first: sign.dropbox.com belongs to Dropbox Sign, under Dropbox.
    assert [a.id for a in catalog.apps_for_domain("app.sign.dropbox.com")] == [
        "dropbox-sign",
        "dropbox",
    ]
    assert catalog.apps_for_domain("notdropbox.com") == []
    assert catalog.apps_for_domain("dropbox.com.attacker.example") == []
    assert catalog.apps_for_domain("com") == []
    assert catalog.apps_for_domain("not a domain") == []


def test_domain_owners_lists_shared_domains(catalog: Catalog) -> None:
    owners = catalog.domain_owners()
    assert owners["dropbox.com"] == ("dropbox",)
    assert owners["atlassian.net"] == ("confluence", "jira")


def test_with_custom_adds_apps_marked_custom(catalog: Catalog) -> None:
    extended = catalog.with_custom([app(domains=["share.acme.example"])])
    assert len(extended) == len(catalog) + 1
    assert extended.get("acme-share").custom
    assert [a.id for a in extended.apps_for_domain("eu.share.acme.example")] == ["acme-share"]
    assert "acme-share" not in catalog


def test_with_custom_refuses_a_bundled_id(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="'dropbox' is already used by a bundled app"):
        catalog.with_custom([app(id="dropbox")])
    with pytest.raises(CatalogError, match="'acme' is already used by another custom app"):
        catalog.with_custom([app(id="acme"), app(id="acme")])


# --- loading errors -------------------------------------------------------------------------

GOOD = """\
- id: acme-share
  name: Acme Share
  vendor: Acme Ltd.
  category: file-sharing
  domains: [acme-share.example]
"""


def load_one(tmp_path: Path, text: str, name: str = "file-sharing.yaml") -> Catalog:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return load_catalog(tmp_path)


def test_a_small_data_dir_loads(tmp_path: Path) -> None:
    loaded = load_one(tmp_path, GOOD)
    assert loaded.get("acme-share").risk == RiskAttributes()
    assert loaded.get("acme-share").score == 5.0


def test_a_bad_category_names_file_line_and_field(tmp_path: Path) -> None:
    text = GOOD + GOOD.replace("acme-share", "acme-two").replace("file-sharing", "filesharing")
    with pytest.raises(CatalogError) as caught:
        load_one(tmp_path, text)
    error = caught.value
    assert (error.file, error.line, error.field) == (
        str(tmp_path / "file-sharing.yaml"),
        9,
        "[1].category",
    )
    assert str(error).startswith(f"{tmp_path / 'file-sharing.yaml'}:9: [1].category: 'filesharing'")


def test_a_bad_domain_names_its_line_and_index(tmp_path: Path) -> None:
    text = GOOD.replace("[acme-share.example]", "\n    - acme-share.example\n    - bad..example")
    with pytest.raises(CatalogError) as caught:
        load_one(tmp_path, text)
    assert (caught.value.line, caught.value.field) == (7, "[0].domains[1]")
    assert "'bad..example' is not a valid domain name" in caught.value.message


def test_a_bad_risk_attribute_names_its_field(tmp_path: Path) -> None:
    text = GOOD + "  risk: {mfa: true, hq_country: Germany}\n"
    with pytest.raises(CatalogError) as caught:
        load_one(tmp_path, text)
    assert (caught.value.line, caught.value.field) == (6, "[0].risk.hq_country")


def test_a_missing_field_names_the_app_line(tmp_path: Path) -> None:
    text = GOOD + GOOD.replace("acme-share", "acme-two").replace("  vendor: Acme Ltd.\n", "")
    with pytest.raises(CatalogError) as caught:
        load_one(tmp_path, text)
    assert (caught.value.line, caught.value.field) == (6, "[1].vendor")
    assert caught.value.message == "field required"


def test_an_unknown_field_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as caught:
        load_one(tmp_path, GOOD + "  colour: red\n")
    assert (caught.value.line, caught.value.field) == (6, "[0].colour")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as caught:
        load_one(tmp_path, GOOD + "  domains: [unclosed\n")
    assert caught.value.file.endswith("file-sharing.yaml")
    assert caught.value.line is not None and caught.value.line >= 6
    assert "invalid YAML" in caught.value.message


def test_a_file_must_hold_a_list_of_apps(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="expected a list of apps"):
        load_one(tmp_path, "id: acme\n")
    with pytest.raises(CatalogError, match=r":6: \[1\]: expected an app"):
        load_one(tmp_path, GOOD + "- just text\n")


def test_an_id_defined_in_two_files_names_both(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.yaml").write_text("# another\n" + GOOD, encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'b.yaml'}:2: id: app id 'acme-share' is already defined at "
        f"{tmp_path / 'a.yaml'}:1"
    )


def test_a_missing_data_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "nowhere")


def test_an_empty_file_holds_no_apps(tmp_path: Path) -> None:
    assert len(load_one(tmp_path, "# nothing yet\n")) == 0


def test_every_app_owns_the_subdomains_of_its_domains(catalog: Catalog) -> None:
    for a in catalog:
        for domain in a.domains:
            assert a in catalog.apps_for_domain(f"x-1.{domain.upper()}."), (a.id, domain)


def test_an_app_needs_a_domain_and_a_plausible_founding_year() -> None:
    with pytest.raises(ValidationError, match="domains"):
        app(domains=[])
    with pytest.raises(ValidationError, match="founded"):
        RiskAttributes(founded=20)


def test_a_catalog_refuses_an_id_twice() -> None:
    with pytest.raises(CatalogError, match="'acme-share' is defined twice"):
        Catalog([app(), app(name="Other")])


def test_load_apps_marks_policy_repository_apps_custom(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert [a.custom for a in load_apps(path, custom=True)] == [True]
    assert [a.custom for a in load_apps(path)] == [False]
