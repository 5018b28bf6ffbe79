"""The web UI in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from serving import running

from neartext.engine.feedback import FEEDBACK_DB
from neartext.serve import ServeSettings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(DRIVER).exists()

if not HAVE_BROWSER and os.environ.get("CI"):
    raise RuntimeError("CI must have chromium and chromium-driver (installed by .ci/run)")
pytestmark = pytest.mark.skipif(
    not HAVE_BROWSER, reason="no chromium/chromedriver here: 'make browser' (apt-get install "
                             "chromium chromium-driver) installs them")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_search_rate_and_more_like_this(browser, demo_copy):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    with running(ServeSettings.from_args([str(demo_copy)])) as server:
        browser.get(server.base + "/")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert browser.find_element(By.ID, "collection").get_attribute("value") == "feedback"
        query = browser.find_element(By.ID, "query")
        query.send_keys("the app crashes when I open a note with a picture")
        k = browser.find_element(By.ID, "k")
        k.clear()
        k.send_keys("3")
        browser.find_element(By.ID, "search-button").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#results li.result")))
        results = browser.find_elements(By.CSS_SELECTOR, "#results li.result")
        assert len(results) == 3
        first = results[0]
        assert first.get_attribute("data-id") == "fb-0007"
        assert "crashes every time I open a note with a picture" in first.text
        link = first.find_element(By.CSS_SELECTOR, ".metadata a")
        assert link.get_attribute("href") == "https://help.lumen-notes.example/topics/crash"
        float(first.find_element(By.CSS_SELECTOR, ".score").text)  # a number is shown
        # and what it is, when the pointer rests on it (a learned ranking's is no cosine)
        assert first.find_element(By.CSS_SELECTOR, ".score").get_attribute("title") == \
            "cosine similarity of meaning, from -1 to 1"
        first.find_element(By.CSS_SELECTOR, ".rate-up").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#results li .rated").text)
        assert first.find_element(By.CSS_SELECTOR, ".rated").text == "rated relevant"
        with sqlite3.connect(demo_copy / FEEDBACK_DB) as db:
            rows = db.execute("SELECT query, doc_id, relevant, created FROM feedback").fetchall()
        assert [r[:3] for r in rows] == [
            ("the app crashes when I open a note with a picture", "fb-0007", 1)]
        first.find_element(By.CSS_SELECTOR, ".more").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "results-title"), "More like fb-0007"))
        more = browser.find_elements(By.CSS_SELECTOR, "#results li.result")
        assert more and all(li.get_attribute("data-id") != "fb-0007" for li in more)


@pytest.mark.slow
def test_map_view_places_a_query(browser, demo_copy, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)  # the first map computes a UMAP projection
    with running(ServeSettings.from_args([str(demo_copy)])) as server:
        browser.get(server.base + "/static/map.html?collection=feedback")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-drawn") == "1")
        status = browser.find_element(By.ID, "status").text
        assert status.endswith("documents") and int(status.split()[0]) > 200
        legend = browser.find_element(By.ID, "legend").text
        assert "crash" in legend  # cluster labels name the themes
        # something was drawn: the canvas is not blank
        blank = browser.execute_script(
            "const c = document.getElementById('map'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;")
        assert blank > 1000
        browser.find_element(By.ID, "query").send_keys("I was charged twice")
        browser.execute_script("document.body.dataset.drawn = '0'")
        browser.find_element(By.CSS_SELECTOR, "#map-form button").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-drawn") == "1")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    # the offline HTML map opens in the browser too
    page = tmp_path / "map.html"
    from neartext.cli import main

    assert main(["map", str(demo_copy), "-o", str(page), "--color-by", "topic", "-q"]) == 0
    browser.get(page.as_uri())
    drawn = browser.execute_script(
        "const c = document.getElementById('map'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;")
    assert drawn > 1000
    assert "billing" in browser.find_element(By.ID, "legend").text


def test_the_header_names_the_chosen_collections_model(browser, demo_copy, tmp_path,
                                                        tiny_model_dir):
    from conftest import DEMO
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from neartext import Collection

    tiny, _ = Collection.from_file(tmp_path / "tiny", DEMO, ["text"], "id",
                                   model=str(tiny_model_dir))
    tiny.close()
    wait = WebDriverWait(browser, 60)
    with running(ServeSettings.from_args([str(demo_copy), str(tmp_path / "tiny")])) as server:
        browser.get(server.base + "/")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        status = browser.find_element(By.ID, "status")
        assert "feedback: model all-MiniLM-L6-v2" in status.text
        Select(browser.find_element(By.ID, "collection")).select_by_value("tiny")
        wait.until(lambda d: "tiny: model" in status.text)
        assert str(tiny_model_dir) in status.text and "MiniLM" not in status.text


def test_html_map_labels_legend_and_hover(browser, demo_copy, tmp_path):
    """The offline HTML map in a real browser: labels inside the canvas and apart, the legend in
    cluster-number order, and the hover text is the chosen field and the text (not an id)."""
    from selenium.webdriver.common.by import By

    from neartext.cli import main

    page = tmp_path / "map.html"
    assert main(["map", str(demo_copy), "-o", str(page), "--color-by", "cluster", "--method",
                 "kmeans", "--k", "16", "--hover", "topic", "-q"]) == 0
    browser.set_window_size(1200, 1000)
    browser.get(page.as_uri())
    boxes = browser.execute_script("return window.neartextMap.labels")
    assert len(boxes) >= 12
    size = browser.execute_script(
        "const c = document.getElementById('map'); return [c.width, c.height]")
    for i, a in enumerate(boxes):
        assert a["x0"] >= 0 and a["x1"] <= size[0] and a["y0"] >= 0 and a["y1"] <= size[1], a
        for b in boxes[i + 1:]:
            assert not (a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"]
                        and b["y0"] < a["y1"]), (a, b)
    legend = [s.text for s in browser.find_elements(By.CSS_SELECTOR, "#legend span")]
    numbers = [int(t.lstrip("● ").split(":")[0]) for t in legend if ":" in t]
    assert numbers == list(range(16))
    tip = browser.execute_script("""
        const data = JSON.parse(document.getElementById('map-data').textContent);
        const c = document.getElementById('map'), box = c.getBoundingClientRect();
        const [x, y] = window.neartextMap.at(data.points[0]);
        c.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + x * box.width / c.width,
                                                     clientY: box.top + y * box.height / c.height}));
        return [document.getElementById('tip').textContent, data.points[0][3]];""")
    text, doc_id = tip
    assert " — " in text and doc_id not in text


@pytest.mark.slow
def test_a_document_of_several_text_columns_shows_its_title_apart(browser, tmp_path, capsys):
    """Memes built with --text title,description: a result shows the title as its heading and
    the description as its text, its other fields below (before: the joined text, then title
    and description again among the fields; a field's value could wrap away from its name)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from neartext.cli import main

    memes = tmp_path / "memes.csv"
    memes.write_text("title,link,description\n"
                     "Кот в ванной,https://m.example/1,Когда понял что завтра понедельник\n"
                     "Сова с кофе,https://m.example/3,Утро после бессонной ночи перед экзаменом\n",
                     encoding="utf-8")
    assert main(["index", str(memes), "-c", str(tmp_path / "memes"), "--text",
                 "title,description", "-q"]) == 0
    capsys.readouterr()
    wait = WebDriverWait(browser, 60)
    with running(ServeSettings.from_args([str(tmp_path / "memes")])) as server:
        status, listed = server.call("GET", "/collections")
        assert status == 200 and listed[0]["text_fields"] == ["title", "description"]
        browser.get(server.base + "/")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        browser.find_element(By.ID, "query").send_keys("утро перед экзаменом")
        browser.find_element(By.ID, "search-button").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#results li.result")))
        first = browser.find_elements(By.CSS_SELECTOR, "#results li.result")[0]
        assert first.find_element(By.CSS_SELECTOR, ".title").text == "Сова с кофе"
        assert first.find_element(By.CSS_SELECTOR, ".text").text == \
            "Утро после бессонной ночи перед экзаменом"
        items = first.find_elements(By.CSS_SELECTOR, ".metadata > div")
        assert [i.find_element(By.TAG_NAME, "dt").text for i in items] == ["link"]
        assert items[0].find_element(By.CSS_SELECTOR, "dd a").get_attribute("href") == \
            "https://m.example/3"
