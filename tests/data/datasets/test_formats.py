"""Every MovieLens release and the csv dataset: parsing against hand-written files, ids, scales, features."""

from __future__ import annotations

import numpy as np
import pytest

from movielens_gnn.data.datasets import DATASETS, Columns, CSVRatings, dataset_class
from movielens_gnn.data.datasets.base import HALF_STARS, WHOLE_STARS
from movielens_gnn.data.datasets.ml1m import MovieLens1M
from movielens_gnn.data.datasets.ml10m import MovieLens10M
from movielens_gnn.data.datasets.ml_latest_small import MovieLensLatestSmall
from tests.formats import COMMA_TITLE, LATIN1_TITLE, QUOTE_TITLE, WRITERS


def test_registry_names_every_dataset():
    assert list(DATASETS) == ["ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "csv"]
    with pytest.raises(ValueError, match=r"Unknown --data.dataset 'ml-2m'; valid values: ml-100k, ml-1m, ml-10m"):
        dataset_class("ml-2m")
    archives = {name: (cls.ARCHIVE_SIZE, cls.ARCHIVE_MD5, cls.FOLDER or cls.NAME) for name, cls in DATASETS.items()
                if name not in ("ml-100k", "csv")}
    assert archives == {
        "ml-1m": (5_917_549, "c4d9eecfca2ab87c1945afe126590906", "ml-1m"),
        "ml-10m": (65_566_137, "ce571fd55effeba0271552578f2648bd", "ml-10M100K"),
        "ml-20m": (198_702_078, "cd245b17a1ae2cc31bb14903e1204af3", "ml-20m"),
        "ml-25m": (261_978_986, "6b51fb2759a8657d3bfcbfc42b592ada", "ml-25m"),
        "ml-32m": (238_950_008, "d472be332d4daa821edc399621853b57", "ml-32m"),
        "ml-latest-small": (978_202, "31a303aabbc519bd33d025e44d6c2570", "ml-latest-small"),
    }


def _write(path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def test_ml1m_hand_written(tmp_path):
    folder = tmp_path / "ml-1m"
    _write(folder / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n\n6040::1193::4::956703932\n")
    _write(folder / "users.dat", "1::F::1::10::48067\n6040::M::25::6::11106\n")
    _write(folder / "movies.dat", "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                                  "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                  "3952::Misérables, Les (1995)::Drama|Musical\n", encoding="latin-1")
    dataset = MovieLens1M(tmp_path)
    side, ratings = dataset.load()
    assert ratings.user_id.tolist() == [1, 1, 6040] and ratings.item_id.tolist() == [1193, 661, 1193]
    assert ratings.rating.tolist() == [5.0, 3.0, 4.0] and ratings.timestamp.tolist() == [978300760, 978302109, 956703932]
    assert side.items.loc[3952, "title"] == "Misérables, Les (1995)" and side.items.loc[661, "year"] == "1996"
    assert side.genres == ("Animation", "Children's", "Drama", "Musical")
    assert dataset.item_features(side, np.array([661, 1193])).tolist() == [[1, 1, 0, 1], [0, 0, 1, 0]]
    users = dataset.user_features(side, np.array([1, 6040]))
    assert users.shape == (2, 2 + 7 + 21)
    # user 1: F, age group "1" (under 18), occupation 10; user 6040: M, 25-34, occupation 6
    assert np.flatnonzero(users[0].numpy()).tolist() == [1, 2 + 0, 9 + 10]
    assert np.flatnonzero(users[1].numpy()).tolist() == [0, 2 + 2, 9 + 6]
    assert dataset.rating_values(ratings) == WHOLE_STARS


def test_ml10m_half_stars_utf8_and_folder(tmp_path):
    folder = tmp_path / "ml-10M100K"
    _write(folder / "ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n71567::122::0.5::912580553\n")
    _write(folder / "movies.dat", "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n"
                                  "65130::Amélie (2001)::(no genres listed)\n")
    dataset = MovieLens10M(tmp_path)
    assert dataset.raw_dir == folder
    side, ratings = dataset.load()
    assert ratings.rating.tolist() == [5.0, 4.5, 0.5] and ratings.user_id.tolist() == [1, 1, 71567]
    assert side.items.loc[65130, "title"] == "Amélie (2001)" and side.genres == ("Action", "Comedy", "Crime", "Romance", "Thriller")
    assert dataset.item_features(side, np.array([122, 185, 65130])).tolist() == [[0, 1, 0, 1, 0], [1, 0, 1, 0, 1], [0] * 5]
    assert dataset.user_features(side, np.array([1, 71567])).shape == (2, 0)
    assert dataset.rating_values(ratings) == HALF_STARS


def test_csv_release_header_quotes_and_half_stars(tmp_path):
    folder = tmp_path / "ml-latest-small"
    _write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,964981247\n"
                                   "610,170875,0.5,1493846415\n")
    _write(folder / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                                  '3,"American President, The (1995)",Comedy|Drama|Romance\n'
                                  '170875,"Quote ""Inside"", Too (2017)",(no genres listed)\n')
    dataset = MovieLensLatestSmall(tmp_path)
    side, ratings = dataset.load()
    assert ratings.item_id.tolist() == [1, 3, 170875] and ratings.rating.tolist() == [4.0, 3.5, 0.5]
    assert side.items.loc[3, "title"] == "American President, The (1995)"
    assert side.items.loc[170875, "title"] == 'Quote "Inside", Too (2017)' and side.items.loc[170875, "year"] == "2017"
    assert side.genres == ("Adventure", "Animation", "Comedy", "Drama", "Romance")
    _write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.25,964982703\n")
    with pytest.raises(ValueError, match=r"ratings\.csv line 2: rating must be one of 0\.5, 1, 1\.5, .*5, got 4\.25"):
        dataset.read_ratings()
    _write(folder / "ratings.csv", "user,movie,rating,timestamp\n1,1,4.0,964982703\n")
    with pytest.raises(ValueError, match=r"expected the header userId,movieId,rating,timestamp, got 'user,movie"):
        dataset.read_ratings()


@pytest.mark.parametrize(("row", "message"), [
    ("2", r"line 4: expected 3 fields \(movieId, title, genres\), got 1 in '2'"),
    ("2,Jumanji (1995)", r"line 4: expected 3 fields .*, got 2 in '2,Jumanji \(1995\)'"),
    ("2,Jumanji, The (1995),Adventure", r"line 4: expected 3 fields .*, got 4 .*\(quote a field that holds a comma, and close every quote\)"),
])
def test_movies_csv_rows_with_missing_or_extra_fields_name_their_line(tmp_path, row, message):
    # pandas pads a short row with empty strings: without the count, '2' loaded as a movie with no title.
    # Line 2's quoted title spans two lines, so the bad row is on line 4, not at row 2 + 1.
    folder = tmp_path / "ml-latest-small"
    _write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    _write(folder / "movies.csv", f'movieId,title,genres\n1,"Toy Story\n(1995)",Animation\n{row}\n')
    with pytest.raises(ValueError, match=r"movies\.csv " + message + r".* Fix or remove that line"):
        MovieLensLatestSmall(tmp_path).read_side()
    _write(folder / "movies.csv", 'movieId,title,genres\n\n1,"Toy Story\n(1995)",Animation\n2,Jumanji (1995),Adventure\n')
    side = MovieLensLatestSmall(tmp_path).read_side()
    assert side.items.loc[2, "title"] == "Jumanji (1995)" and side.items.loc[1, "title"] == "Toy Story\n(1995)"


@pytest.mark.parametrize("name", list(WRITERS))
def test_generated_fixtures_parse_with_gaps_and_unrated_movies(tmp_path, name):
    WRITERS[name](tmp_path)
    dataset = dataset_class(name)(tmp_path)
    side, ratings = dataset.load()
    assert len(ratings) == 20 * 12 and len(np.unique(ratings.item_id)) == 26 and len(side.items) == 28
    assert np.unique(ratings.item_id).tolist()[:5] == [1, 2, 4, 7, 11]  # the id gaps survive
    assert side.items.loc[2, "title"] == LATIN1_TITLE and side.items.loc[4, "title"] == COMMA_TITLE
    assert side.items.loc[7, "title"] == QUOTE_TITLE
    half = name != "ml-1m"
    assert set(np.unique(ratings.rating)) <= set(HALF_STARS if half else WHOLE_STARS)
    assert (np.unique(ratings.rating) % 1 == 0.5).any() == half


@pytest.mark.parametrize(("name", "line", "message"), [
    ("ml-1m", "1::2::6::978300760", r"ratings\.dat line 3: rating must be one of 1, 2, 3, 4, 5, got 6"),
    ("ml-1m", "1::2::x::978300760", r"ratings\.dat line 3: rating must be a number, got 'x'"),
    ("ml-1m", "1::2::3", r"ratings\.dat line 3: expected the fields user_id::item_id::rating::timestamp, got '1::2::3'"),
    ("ml-1m", "1:2::3::4::5", r"ratings\.dat line 3: expected the fields"),
    ("ml-10m", "1::2.5::3::978300760", r"ratings\.dat line 3: item_id must be an integer >= 1 below 2\^53 \(9007199254740992\), "
                                       r"got 2\.5 in '1::2\.5::3::978300760'"),
    ("ml-20m", "1,2,3.0", r"ratings\.csv line 3: expected the fields user_id,item_id,rating,timestamp, got '1,2,3.0'"),
    ("ml-20m", "1,2,3.0,4,5", r"ratings\.csv line 3: expected the fields user_id,item_id,rating,timestamp, got '1,2,3.0,4,5'"),
])
def test_malformed_lines_name_file_and_line(tmp_path, name, line, message):
    folder = WRITERS[name](tmp_path)
    path = next(folder.glob("ratings.*"))
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = line + "\n"
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match=message):
        dataset_class(name)(tmp_path).load()


@pytest.mark.parametrize("name", ["ml-1m", "ml-32m"])
def test_duplicate_pair_and_unlisted_movie(tmp_path, name):
    folder = WRITERS[name](tmp_path)
    path = next(folder.glob("ratings.*"))
    lines = path.read_text().splitlines(keepends=True)
    header = 1 if path.suffix == ".csv" else 0
    original = lines[header]
    lines[header + 5] = original
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match=rf"line {header + 6}: user \d+ rated item \d+ twice \(also on line {header + 1}\)"):
        dataset_class(name)(tmp_path).load()
    sep = "," if header else "::"
    fields = original.split(sep)
    lines[header + 5] = sep.join([fields[0], "99999", *fields[2:]])
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match=rf"line {header + 6}: item_id 99999 is not listed in the items file"):
        dataset_class(name)(tmp_path).load()


# ------------------------------------------------------------------------------------------- csv
def test_csv_with_header_names_and_items_file(tmp_path):
    path = tmp_path / "mine.csv"
    _write(path, "when;who;what;stars\n100;7;30;4.5\n200;7;10;2\n\n300;12;30;3.75\n")
    _write(tmp_path / "items.csv", 'what;title;genres\n10;"Heat; The Director\'s Cut (1995)";Action|Crime\n30;Amélie (2001);\n')
    dataset = CSVRatings(tmp_path, path, Columns(user="who", item="what", rating="stars", timestamp="when"), ";",
                         items_path=tmp_path / "items.csv")
    side, ratings = dataset.load()
    assert ratings.user_id.tolist() == [7, 7, 12] and ratings.item_id.tolist() == [30, 10, 30]
    assert ratings.rating.tolist() == [4.5, 2.0, 3.75] and ratings.timestamp.tolist() == [100, 200, 300]
    assert dataset.rating_values(ratings) == (2.0, 3.75, 4.5)  # the scale is what the file holds
    assert side.items.loc[10, "title"] == "Heat; The Director's Cut (1995)" and side.genres == ("Action", "Crime")
    assert dataset.item_features(side, np.array([10, 30])).tolist() == [[1, 1], [0, 0]]


def test_csv_with_every_field_quoted_and_a_quoted_comma_in_a_column_not_read(tmp_path):
    # As some database and spreadsheet exports write it: quotes everywhere, a comment column with commas.
    path = tmp_path / "export.csv"
    _write(path, '"user","note","item","rating"\n"7","good, really","30","4.5"\n"12","","10","2"\n')
    ratings = CSVRatings(tmp_path, path, Columns(user="user", item="item", rating="rating"), ",").read_ratings()
    assert ratings.user_id.tolist() == [7, 12] and ratings.item_id.tolist() == [30, 10]
    assert ratings.rating.tolist() == [4.5, 2.0]
    _write(path, '"user","note","item","rating"\n"7","a, b","30","4.5"\n"12","","ten","2"\n')
    with pytest.raises(ValueError, match=r"export\.csv line 3: item_id must be a number, got 'ten'"):
        CSVRatings(tmp_path, path, Columns(user="user", item="item", rating="rating"), ",").read_ratings()
    # A quote left open would join the lines after it into one record (user 1 with user 4's item and rating).
    _write(path, 'user,note,item,rating\n1,"12 inch,5,4\n2,ok,6,3\n4,he said "hi",8,2\n5,"x",9,1\n')
    with pytest.raises(ValueError, match=r"export\.csv line 2: a quote \(\"\) opens a field that the line does not "
                                         r"close, in '1,\"12 inch,5,4'; left open, it would join the lines after it"):
        CSVRatings(tmp_path, path, Columns(user="user", item="item", rating="rating"), ",").read_ratings()


def test_csv_by_position_without_header_or_timestamp(tmp_path):
    path = tmp_path / "plain.tsv"
    _write(path, "u1x\t5\t3\t4\n")
    with pytest.raises(ValueError, match=r"plain\.tsv line 1: user_id must be a number, got 'u1x'"):
        CSVRatings(tmp_path, path, Columns(user=0, item=1, rating=3), "\t", header=False).read_ratings()
    _write(path, "1\t5\t3\t4\n2\t6\t3\t2\n")
    ratings = CSVRatings(tmp_path, path, Columns(user=0, item=1, rating=3), "\t", header=False).read_ratings()
    assert ratings.rating.tolist() == [4.0, 2.0] and ratings.timestamp.tolist() == [0, 0]


@pytest.mark.parametrize(("text", "columns", "message"), [
    ("user_id,item_id,score\n1,2,3\n", Columns(), r"mine\.csv has no column 'rating' \(--data.columns.rating\); its "
                                                  r"header has 'user_id', 'item_id', 'score'"),
    ("user_id,item_id,rating\n1,2,3\n1,3,good\n", Columns(), r"mine\.csv line 3: rating must be a number, got 'good'\. "
                                                            r"Fix or remove that line, or restore the original file\.$"),
    ("user_id,item_id,rating\n1,2,3\n1,3.5,4\n", Columns(), r"mine\.csv line 3: item id must be an integer >= 0 below "
                                                          r"2\^53 \(9007199254740992\), got 3\.5 in '1,3\.5,4'\. "
                                                          r"Fix or remove that line, or restore the original file\.$"),
    # float64 holds integers exactly only below 2^53: larger ids would merge (...993 reads as ...992) or wrap.
    ("user_id,item_id,rating\n1,2,3\n9007199254740993,2,4\n", Columns(),
     r"mine\.csv line 3: user id must be an integer >= 0 below 2\^53 .*got 9\.0072e\+15 in '9007199254740993,2,4'"),
    ("user_id,item_id,rating\n1,2,3\n99999999999999999999,2,4\n", Columns(), r"mine\.csv line 3: user id must be an integer"),
    ("user_id,item_id,rating\n1,2,3\n1,3,inf\n", Columns(), r"mine\.csv line 3: rating must be a finite number, got inf\. "),
    ("user_id,item_id,rating\n1,2,3\n1,3,nan\n", Columns(), r"mine\.csv line 3: rating must be a number, got 'nan'\. "),
    ("user_id,item_id,rating\n", Columns(), r"mine\.csv has no data lines; expected lines of user_id,item_id,rating\.$"),
    ("", Columns(), r"mine\.csv is empty or starts with a blank line; expected a header naming the columns"),
    ("user_id;item_id;rating\n1;2;3\n", Columns(), r"mine\.csv has no column 'user_id' .*its header has 'user_id;item_id;"
                                                    r"rating'\. The header reads as one field: the file looks ';'-separated; "
                                                    r"pass --data\.separator ';'\.$"),
    ("user_id\titem_id\trating\n1\t2\t3\n", Columns(), r"the file looks '\\t'-separated; pass --data\.separator tab\.$"),
    ("user_id,item_id,rating\n1,2,3\n1,2,4\n", Columns(), r"mine\.csv line 3: user 1 rated item 2 twice \(also on line 2\); each \(user, item\) "
                                                        r"pair may appear once\. Remove one of the two lines, or restore "
                                                        r"the original file\.$"),
    ("user_id,item_id,rating\n1,2,3\n1,3\n", Columns(), r"mine\.csv line 3: expected the fields user_id,item_id,rating"),
    ("user_id,item_id,rating\n1,2,3\n2,2,4\n1,2,5\n2,2,1\n2,2,2\n", Columns(),
     r"mine\.csv line 4: user 1 rated item 2 twice \(also on line 2\), and 2 more lines repeat an earlier pair; each "
     r"\(user, item\) pair may appear once\. Keep one line per pair"),
    # Most lines alike: the file's format, not a damaged line, and what to convert.
    ("user_id,item_id,rating\nu1,i1,4\nu1,i2,3\nu2,i1,5\n", Columns(),
     r"mine\.csv line 2: user_id must be a number, got 'u1'\. 3 of the first 3 lines are like it: ids must be integers; "
     r"map yours to integers first"),
    ("user_id,item_id,rating,ts\n1,1,4,1997-12-04 15:55:49\n1,2,3,1997-12-05 10:00:00\n", Columns(timestamp="ts"),
     r"line 2: timestamp must be a number, got '1997-12-04 15:55:49'\. 2 of the first 2 lines are like it: timestamps "
     r"must be Unix seconds"),
])
def test_csv_errors_name_what_and_where(tmp_path, text, columns, message):
    path = tmp_path / "mine.csv"
    _write(path, text)
    with pytest.raises(ValueError, match=message):
        CSVRatings(tmp_path, path, columns).read_ratings()


def test_a_file_of_interactions_without_ratings_counts_each_line_as_one(tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text("user,movie,ts\n7,3,100\n7,9,200\n8,3,150\n")
    ratings = CSVRatings(tmp_path, path, Columns(user="user", item="movie", rating=None, timestamp="ts")).read_ratings()
    assert ratings.user_id.tolist() == [7, 7, 8] and ratings.item_id.tolist() == [3, 9, 3]
    assert ratings.rating.tolist() == [1.0, 1.0, 1.0] and ratings.timestamp.tolist() == [100, 200, 150]
    bare = tmp_path / "bare.csv"
    bare.write_text("7,3\n8,3\n")
    positions = CSVRatings(tmp_path, bare, Columns(user=0, item=1, rating=None), header=False)
    assert positions.read_ratings().rating.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"--data.columns.user must name a column .*got null"):
        CSVRatings(tmp_path, path, Columns(user=None))


def test_decimal_commas_are_named_as_the_files_format(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("user_id;item_id;rating\n1;1;3,5\n1;2;4,0\n2;1;5\n")
    with pytest.raises(ValueError, match=r"line 2: rating must be a number, got '3,5'\. 2 of the first 3 lines are like "
                                         r"it: decimal commas; write numbers with a decimal point"):
        CSVRatings(tmp_path, path, Columns(), ";").read_ratings()


def test_csv_with_a_byte_order_mark_and_a_typed_tab(tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM; "\\t" (two characters, as typed) or "tab" mean a tab; an items
    file may be comma-separated beside a tab-separated ratings file."""
    path = tmp_path / "mine.tsv"
    path.write_bytes("\ufeffuser_id\titem_id\trating\n1\t2\t3\n2\t5\t4\n".encode("utf-8"))
    items = tmp_path / "items.csv"
    items.write_bytes("\ufeffitem_id,title,genres\n2,Two (1999),Drama\n5,Five (2001),Comedy|Drama\n".encode("utf-8"))
    for separator in ("\\t", "tab", "\t"):
        dataset = CSVRatings(tmp_path, path, Columns(), separator, items_path=items)
        ratings = dataset.read_ratings()
        assert ratings.user_id.tolist() == [1, 2] and ratings.item_id.tolist() == [2, 5]
        assert dataset.read_side().items.title.tolist() == ["Two (1999)", "Five (2001)"]


def test_csv_timestamps_in_nanoseconds_and_an_items_file_that_fits_no_separator(tmp_path):
    """Timestamps only order ratings: 2^53 (ids) does not bound them. An items file that is neither
    ';'- nor comma-separated is named by its header, not by pandas' tokenizer."""
    path = tmp_path / "mine.csv"
    path.write_text("user_id;item_id;rating;ts\n1;2;3;1700000000123456789\n2;3;4;1700000000223456789\n")
    ratings = CSVRatings(tmp_path, path, Columns(timestamp="ts"), ";").read_ratings()
    assert ratings.timestamp[0] < ratings.timestamp[1] and ratings.timestamp[0] > 2**60
    items = tmp_path / "items.csv"
    items.write_text("movieId;title;genres\n2;Two (1999);Drama\n3;Three, The (1995);Drama\n")
    with pytest.raises(ValueError, match=r"items\.csv has no column 'item_id'.*its header has 'movieId', 'title', 'genres'"):
        CSVRatings(tmp_path, path, Columns(timestamp="ts"), ";", items_path=items).read_side()


@pytest.mark.parametrize(("content", "message"), [
    ("item_id,title\n1,Am\xe9lie (2001)\n".encode("latin-1"),
     r"--data.items_path .*items.csv is not UTF-8 text \(invalid continuation byte\): save it as UTF-8"),
    (b"item_id,title,genres\n1,Heat (1995),Action\n2,Copycat, The (1995),Crime\n",
     r"items.csv: a line has more fields than the header \(.*Expected 3 fields in line 3, saw 4\)\. A title that holds "
     r"the separator must be in double quotes"),
    (b"item_id;title;genres\n1;Heat (1995);Action\n2;Copycat, The (1995);Crime\n",
     r"items.csv: a line has more fields than the header .* Its header reads as ';'-separated: write the items file "
     r"with commas\.$"),
])
def test_items_file_errors_name_the_file_and_the_fix(tmp_path, content, message):
    path = tmp_path / "mine.csv"
    path.write_text("user_id,item_id,rating\n1,1,4\n2,2,3\n")
    items = tmp_path / "items.csv"
    items.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        CSVRatings(tmp_path, path, Columns(), ",", items_path=items).read_side()
    semicolons = tmp_path / "mine;.csv"  # a ';' ratings file beside a comma items file with an unquoted title:
    semicolons.write_text("user_id;item_id;rating\n1;1;4\n2;2;3\n")  # the line is reported, not a missing column
    items.write_bytes(b"item_id,title\n1,Heat (1995)\n2,Copycat, The (1995)\n")
    with pytest.raises(ValueError, match=r"a line has more fields than the header .*in double quotes"):
        CSVRatings(tmp_path, semicolons, Columns(), ";", items_path=items).read_side()
    items.write_bytes(b'item_id,title\n1,"Copycat, The (1995)"\n')  # quoted: fine
    assert CSVRatings(tmp_path, path, Columns(), ",", items_path=items).read_side().items.title.tolist() == [
        "Copycat, The (1995)"]


def test_csv_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"--data.columns.user must be a 0-based column position when --data.header "
                                         r"is false, got 'user_id'"):
        CSVRatings(tmp_path, tmp_path / "x.csv", Columns(), header=False)
    with pytest.raises(ValueError, match=r"--data.separator must be one character"):
        CSVRatings(tmp_path, tmp_path / "x.csv", Columns(), separator="::")
    with pytest.raises(FileNotFoundError, match=r"--data.path .*x\.csv is not a file"):
        CSVRatings(tmp_path, tmp_path / "x.csv").prepare()
