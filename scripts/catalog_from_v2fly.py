#!/usr/bin/env python3
"""Build the catalog's generated apps (enforcer/catalog/data/v2fly/*.yaml) from the community
domain lists of v2fly/domain-list-community (MIT; see enforcer/catalog/NOTICE).

    python scripts/catalog_from_v2fly.py PATH/TO/domain-list-community/data [--commit SHA]

Each service file of the lists (``data/<name>``) that a curated ``category-*`` list includes
becomes one app of the matching Enforcer category (`CATEGORY_MAP`; the first match in that order
wins). Its domains are the file's own ``domain:`` and ``full:`` rules (not its includes, which
are other services, nor keyword or regexp rules, nor rules marked ``@ads``), normalized,
without shared infrastructure (`SHARED_INFRASTRUCTURE`), without names a hand-written app
already covers or a parent of one (a suite's ``openai.com`` above ``chat.openai.com``), without
a name below another of the same app, at most 15 (the shortest first). A domain two services list goes to one of them (`_owner`): the generated apps share no
domain. Services that keep no domain, or whose id a hand-written app already has, are left out.

Nothing is guessed: the vendor is "unknown", every risk fact is null (unknown, so the score is
5.0 and says "0 of 10 facts known") until someone reviews the app and moves it, with its
sourced facts, into a hand-written file. The output is sorted and stable, so that a refresh
diffs cleanly; run it again after updating the lists, then `pytest tests/test_catalog.py`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enforcer.catalog.loader import DATA_DIR, load_apps
from enforcer.catalog.model import normalize_domain

OUT_DIR = DATA_DIR / "v2fly"
MAX_DOMAINS = 15

CATEGORY_MAP: tuple[tuple[str, str], ...] = (
    ("category-doh", "dns-over-https"),
    ("category-password-management", "password-manager"),
    ("category-proxy-tunnels", "tunneling"),
    ("category-remote-control", "remote-access"),
    ("category-urlshortner", "url-shortener"),
    ("category-vpnservices", "vpn-proxy"),
    ("category-anticensorship", "vpn-proxy"),
    ("category-ai-!cn", "generative-ai"),
    ("category-ai-chat-!cn", "generative-ai"),
    ("category-ai-cn", "generative-ai"),
    ("category-ai-ru", "generative-ai"),
    ("category-netdisk-!cn", "cloud-storage"),
    ("category-netdisk-cn", "cloud-storage"),
    ("category-pt", "file-sharing"),
    ("category-public-tracker", "file-sharing"),
    ("category-cryptocurrency", "cryptocurrency"),
    ("category-porn", "adult"),
    ("category-communication", "messaging"),
    ("category-voip", "messaging"),
    ("category-collaborate-cn", "collaboration"),
    ("category-documents-cn", "productivity"),
    ("category-browser-!cn", "productivity"),
    ("category-container", "dev-tools"),
    ("category-dev", "dev-tools"),
    ("category-dev-cn", "dev-tools"),
    ("category-cdn-!cn", "cloud-infrastructure"),
    ("category-cdn-cn", "cloud-infrastructure"),
    ("category-ddns", "cloud-infrastructure"),
    ("category-antivirus", "security"),
    ("category-network-security-cn", "security"),
    ("category-social-media-!cn", "social-media"),
    ("category-social-media-cn", "social-media"),
    ("category-social-media-ir", "social-media"),
    ("category-blog-cn", "social-media"),
    ("category-forums", "social-media"),
    ("category-forums-ir", "social-media"),
    ("category-forums-ru", "social-media"),
    ("category-games", "gaming"),
    ("category-games-!cn", "gaming"),
    ("category-games-cn", "gaming"),
    ("category-game-platforms-download", "gaming"),
    ("category-game-accelerator-cn", "gaming"),
    ("category-enhance-gaming", "gaming"),
    ("category-emby", "media-streaming"),
    ("category-entertainment", "media-streaming"),
    ("category-entertainment-cn", "media-streaming"),
    ("category-entertainment-ru", "media-streaming"),
    ("category-acg", "media-streaming"),
    ("category-novel", "media-streaming"),
    ("category-ecommerce", "shopping"),
    ("category-ecommerce-ru", "shopping"),
    ("category-retail-ru", "shopping"),
    ("category-shopping-ir", "shopping"),
    ("category-finance", "finance"),
    ("category-bank-cn", "finance"),
    ("category-bank-ir", "finance"),
    ("category-bank-jp", "finance"),
    ("category-bank-mm", "finance"),
    ("category-bank-ru", "finance"),
    ("category-payment-ir", "finance"),
    ("category-securities-cn", "finance"),
    ("category-bourse-ir", "finance"),
    ("category-insurance-ir", "finance"),
    ("category-scholar-!cn", "education"),
    ("category-scholar-cn", "education"),
    ("category-scholar-hk", "education"),
    ("category-scholar-ir", "education"),
    ("category-scholar-uk", "education"),
    ("category-mooc-cn", "education"),
    ("category-education-cn", "education"),
    ("category-education-ir", "education"),
    ("category-education-ru", "education"),
    ("category-olympiad-in-informatics", "education"),
    ("category-web-archive", "reference"),
    ("category-wiki-cn", "reference"),
    ("category-media", "news-media"),
    ("category-media-cn", "news-media"),
    ("category-media-ir", "news-media"),
    ("category-media-ru", "news-media"),
    ("category-media-ru-blocked", "news-media"),
    ("category-news-ir", "news-media"),
    ("category-tech-media", "news-media"),
    ("category-tech-media-ru", "news-media"),
    ("category-ads-all", "advertising"),
    ("category-ads", "advertising"),
    ("category-ads-ir", "advertising"),
    ("category-betting-ru", "gambling"),
    ("category-travel-ru", "travel"),
    ("category-travel-ir", "travel"),
    ("category-cas", "security"),
    ("category-android-app-download", "software-downloads"),
    ("category-orgs", "reference"),
    ("category-companies", "business"),
    ("category-enterprise-query-platform-cn", "business"),
    ("category-logistics-cn", "business"),
    ("category-electronic-cn", "business"),
    ("category-automobile-cn", "business"),
    ("category-mobile-repair", "business"),
)
"""v2fly category list -> Enforcer category, most specific first (a service in two lists takes
the first). Lists of network plumbing (ntp, stun, speedtest, httpdns, ip-geo-detect) and of
whole countries (ru, ir) are not mapped: they say where a service is, not what it is."""

_KINDS = {
    "file-sharing": """1337x piratebay rarbg nyaa demonoid btdig annas-archive libgen flibusta
        avaxhome imagebam imgbb imageshack imagetwist postimages pixhost casimages imgur""",
    "media-streaming": "gfycat streamable jwplayer wistia brightcove polyv hdrezka kinopub kodik",
    "social-media": "4pda disqus nga stage1st steemit renren jianshu dribbble gravatar slideshare",
    "messaging": "chatango",
    "education": """codecademy coursera edx udacity udemy skillshare khanacademy freecodecamp
        brilliant masterclass code codeforces laracasts egghead w3schools pearson ted hkedcity
        skyeng""",
    "reference": """wikimedia wikihow fandom miraheze wikidot linguee translatewiki lifewire
        betterexplained accuweather gismeteo qweather windy duckduckgo startpage zotero""",
    "news-media": "anandtech cnet techpowerup techtimes idg sitepoint meduza",
    "productivity": "feedly inoreader rsshub wps kingsoft zoho myoffice-ru wolai flowus jinshuju wjx",
    "collaboration": "zeplin",
    "dev-tools": "contentful twilio mapbox localizejs tidelift agora getui jiguang wix",
    "cloud-infrastructure": "flyio cloudinary qingcloud ucloud ctyun capitalonline hurricaneelectric",
    "security": "hcaptcha geetest vaptcha adguard adblock adblockplus easylist qianxin trustasia",
    "software-downloads": "aptoide kodi blender faststone iina setapp",
    "shopping": "newegg dangdang pinduoduo suning mogujie vancl smzdm dewu 58tongcheng ganji",
    "finance": """paypal visa mastercard squareup eastmoney pingan otpbank raiffeisenbank
        everbright suishouji liberapay opencollective gofundme patreon buymeacoffee""",
    "travel": "ctrip tongcheng mafengwo airchina hainanairlines didi whoosh",
    "business": "51job lagou liepin",
    "gaming": "wanmei",
}
KNOWN_KINDS: dict[str, str] = {
    service: category for category, names in _KINDS.items() for service in names.split()
}
"""What a service is, for well-known services that no category list includes: a plain
statement of the service's kind (a torrent index, a course platform, a payment service), read
from the service's own site; reviewed by hand, used after the lists."""

_SHARED = """
    amazonaws.com cloudfront.net akamaized.net akamaihd.net akamaiedge.net edgekey.net
    edgesuite.net akamai.net fastly.net cloudflare.net cloudflare.com azureedge.net windows.net
    googleapis.com gstatic.com googleusercontent.com google.com microsoft.com live.com
    microsoftonline.com apple.com amazon.com github.io githubusercontent.com herokuapp.com
    icloud.com ggpht.com googlevideo.com doubleclick.net appspot.com firebaseio.com
    azurewebsites.net cloudapp.net trafficmanager.net msecnd.net office.com office.net
    facebook.com fbcdn.net instagram.com youtube.com ytimg.com twitter.com twimg.com x.com
"""
SHARED_INFRASTRUCTURE = frozenset(_SHARED.split())
"""Names that serve many unrelated apps (or belong to a hand-written app's vendor suite): no
generated app may list them."""

_RULE = re.compile(r"^(?:(domain|full|keyword|regexp|include):)?([^\s@#]+)((?:\s+@[^\s#]+)*)")


@dataclass
class ListFile:
    """One file of the lists: its domain rules (name, exact) and the files it includes."""

    name: str
    domains: list[str] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)


def read_lists(data: Path) -> dict[str, ListFile]:
    files: dict[str, ListFile] = {}
    for path in sorted(data.iterdir()):
        if not path.is_file():
            continue
        entry = ListFile(path.name)
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            match = _RULE.match(line)
            if not line or not match:
                continue
            kind, value, attrs = match.group(1) or "domain", match.group(2), match.group(3)
            if kind == "include":
                entry.includes.append(value)
            elif kind in ("domain", "full") and "@ads" not in attrs:
                entry.domains.append(value)
        files[path.name] = entry
    return files


def reachable(files: dict[str, ListFile], start: str) -> set[str]:
    """The files a list includes, directly or not."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        current = files.get(todo.pop())
        for name in current.includes if current is not None else ():
            if name not in seen and name in files:
                seen.add(name)
                todo.append(name)
    return seen


def categories_of_services(files: dict[str, ListFile]) -> dict[str, tuple[str, str]]:
    """service file -> (Enforcer category, the v2fly list it came from)."""
    out: dict[str, tuple[str, str]] = {}
    for source, category in CATEGORY_MAP:
        if source not in files:
            continue
        for name in sorted(reachable(files, source)):
            if not name.startswith("category-"):
                out.setdefault(name, (category, source))
    for name, category in KNOWN_KINDS.items():
        if name in files:
            out.setdefault(name, (category, ""))
    return out


def _under(name: str, domains: set[str]) -> bool:
    labels = name.split(".")
    return any(".".join(labels[i:]) in domains for i in range(1, len(labels) - 1))


def _tidy(values: list[str]) -> list[str]:
    """Normalized names, without shared infrastructure (first: a specific host below it stays)
    and without a name below another, shortest first."""
    names = set()
    for value in values:
        try:
            names.add(normalize_domain(value))
        except ValueError:
            continue
    names -= SHARED_INFRASTRUCTURE
    kept = {n for n in names if not _under(n, names)}
    return sorted(kept, key=lambda n: (n.count("."), len(n), n))


def hand_written() -> tuple[set[str], set[str]]:
    """The ids and domains of the hand-written catalog (data/*.yaml)."""
    ids: set[str] = set()
    domains: set[str] = set()
    for path in sorted(DATA_DIR.glob("*.yaml")):
        for app in load_apps(path):
            ids.add(app.id)
            domains.update(app.domains)
    return ids, domains


def _app_id(name: str) -> str | None:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return slug[:64] if slug and "!" not in name and re.match(r"^[a-z0-9]", slug) else None


def _owner(domain: str, claimants: list[str]) -> str:
    """Which of the services listing a domain keeps it: the one whose name the domain contains,
    else the first by name."""
    token = {c: c.replace("-", "") in domain.replace("-", "").replace(".", "") for c in claimants}
    return sorted(claimants, key=lambda c: (not token[c], c))[0]


def _display_name(name: str) -> str:
    return " ".join(part.capitalize() for part in re.split(r"[-_]", name) if part)


def build(data: Path) -> dict[str, list[dict[str, object]]]:
    files = read_lists(data)
    categorized = categories_of_services(files)
    taken_ids, taken_domains = hand_written()
    # A suite's parent domain stays out when a hand-written app lists a host below it
    # (openai.com above chat.openai.com): listing it would make a second, broader app of them.
    taken_parents = {d.split(".", i)[-1] for d in taken_domains for i in range(1, d.count("."))}
    candidates: dict[str, list[str]] = {}
    for name in sorted(categorized):
        app_id = _app_id(name)
        if app_id is None or app_id in taken_ids:
            continue
        domains = [
            d
            for d in _tidy(files[name].domains)
            if d not in taken_domains and d not in taken_parents and not _under(d, taken_domains)
        ]
        if domains:
            candidates[name] = domains
    claims: dict[str, list[str]] = defaultdict(list)
    for name, domains in candidates.items():
        for domain in domains:
            claims[domain].append(name)
    apps: dict[str, list[dict[str, object]]] = defaultdict(list)
    for name, domains in sorted(candidates.items()):
        own = [d for d in domains if _owner(d, claims[d]) == name][:MAX_DOMAINS]
        if not own:
            continue
        category, source = categorized[name]
        app_id = _app_id(name)
        apps[category].append(
            {
                "id": app_id,
                "name": _display_name(name),
                "vendor": "unknown",
                "category": category,
                "website": f"https://{own[0]}",
                "description": (
                    f"From v2fly/domain-list-community data/{name} "
                    + (f"(listed in {source}); " if source else "(its kind reviewed by hand); ")
                    + "not reviewed yet: the vendor and every risk fact are unknown."
                ),
                "domains": own,
            }
        )
    return apps


def _yaml_value(value: object) -> str:
    if isinstance(value, list):  # of domain names: plain unless YAML would read another type
        return "[" + ", ".join(v if re.search(r"[a-z]", v) else f'"{v}"' for v in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write(apps: dict[str, list[dict[str, object]]], commit: str, out_dir: Path = OUT_DIR) -> int:
    out_dir.mkdir(exist_ok=True)
    for old in out_dir.glob("*.yaml"):
        old.unlink()
    total = 0
    for category, entries in sorted(apps.items()):
        lines = [
            f"# Category: {category}. GENERATED by scripts/catalog_from_v2fly.py: do not edit; to",
            "# review an app, move it with its sourced risk facts into ../<category>.yaml.",
            "# Domains: v2fly/domain-list-community (MIT License, Copyright (c) 2018-2019 V2Ray),",
            f"# commit {commit}, files under data/; see ../../NOTICE.",
            "",
        ]
        for entry in sorted(entries, key=lambda e: str(e["id"])):
            lines.append(f"- id: {_yaml_value(entry['id'])}")
            for key in ("name", "vendor", "category", "website", "description", "domains"):
                lines.append(f"  {key}: {_yaml_value(entry[key])}")
            total += 1
        (out_dir / f"{category}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the data/ directory of domain-list-community")
    parser.add_argument("--commit", default="c975ccef9c19f005a3bfa7a33255d1b406deea64")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to write (replaced)")
    args = parser.parse_args()
    total = write(build(args.data), args.commit, args.out)
    print(f"wrote {total} apps to {args.out}")


if __name__ == "__main__":
    main()
