"""BM25 statistics for the full-text leg of search, kept by PostgreSQL in the chunks' own transaction.

- `knowledge_search_length(tsvector)`: lexeme positions in a search vector, BM25's chunk length
  (search derives a candidate's length in the same pass that reads its term frequencies, so
  nothing is stored per chunk and adding this needs no rewrite of the chunk table).
- `knowledge_lexeme(lexeme, chunks)`: in how many chunks each lexeme occurs (document frequency).
- `knowledge_chunk_totals`: one row, the number of chunks with a search vector and their summed
  length (BM25's N and average length).

Statement-level AFTER triggers with transition tables keep both tables current for every INSERT,
UPDATE and DELETE on knowledge_chunk (including cascades from deleted documents and collections),
in the same transaction, so readers always see statistics that match the chunks they can see;
TRUNCATE empties them. Why this stays correct and deadlock-free under concurrent ingestion:
each trigger first upserts the totals row, so it takes that one row lock before any lexeme
lock and holds it to commit; writers of chunks therefore queue on one row (for the few
milliseconds between their chunk statement and commit) instead of taking lexeme locks in
crossing orders. Increments are relative (`chunks = chunks + delta`), so a writer that waited
adds to the committed value. Lexemes are also upserted in sorted order, which keeps a single
statement's locks ordered should the totals row ever stop serialising writers.

The statistics of existing chunks are computed once here; their search vectors (title A,
heading B, text D, built by indexing._fill_search_vectors) need no rebuild.
"""

from django.db import migrations, models

SEARCH_LENGTH = """
CREATE FUNCTION knowledge_search_length(vector tsvector) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT coalesce(sum(greatest(cardinality(positions), 1)), 0)::integer FROM unnest(vector));
"""

# The rows a statement changed, as (sign, search_vector): +1 for rows that now
# exist, -1 for rows that no longer do. An UPDATE contributes both, so unchanged vectors cancel.
TRIGGER_FUNCTION = """
CREATE FUNCTION knowledge_chunk_count_lexemes() RETURNS trigger
LANGUAGE plpgsql AS $function$
DECLARE
    changed text := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT 1 AS sign, search_vector FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT -1 AS sign, search_vector FROM old_rows'
        ELSE 'SELECT -1 AS sign, search_vector FROM old_rows
              UNION ALL SELECT 1, search_vector FROM new_rows'
    END;
    emptied text[];
BEGIN
    -- The totals row first: its lock orders every writer of chunks before any lexeme lock.
    EXECUTE format($sql$
        INSERT INTO knowledge_chunk_totals AS t (id, chunks, length)
        SELECT 1, coalesce(sum(sign), 0), coalesce(sum(sign * knowledge_search_length(search_vector)), 0)
          FROM (%s) AS changed
         WHERE search_vector IS NOT NULL
        ON CONFLICT (id) DO UPDATE SET chunks = t.chunks + excluded.chunks, length = t.length + excluded.length
    $sql$, changed);
    EXECUTE format($sql$
        WITH counted AS (
            INSERT INTO knowledge_lexeme AS l (lexeme, chunks)
            SELECT word.lexeme, sum(changed.sign)
              FROM (%s) AS changed
             CROSS JOIN unnest(changed.search_vector) AS word
             GROUP BY word.lexeme
            HAVING sum(changed.sign) <> 0
             ORDER BY word.lexeme
            ON CONFLICT (lexeme) DO UPDATE SET chunks = l.chunks + excluded.chunks
            RETURNING l.lexeme, l.chunks
        )
        SELECT array_agg(lexeme) FROM counted WHERE chunks = 0
    $sql$, changed) INTO emptied;
    IF emptied IS NOT NULL THEN
        DELETE FROM knowledge_lexeme WHERE lexeme = ANY(emptied) AND chunks = 0;
    END IF;
    RETURN NULL;
END
$function$;

CREATE FUNCTION knowledge_chunk_forget_lexemes() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    DELETE FROM knowledge_chunk_totals;
    DELETE FROM knowledge_lexeme;
    RETURN NULL;
END
$function$;

CREATE TRIGGER knowledge_chunk_lexemes_insert AFTER INSERT ON knowledge_chunk
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION knowledge_chunk_count_lexemes();
CREATE TRIGGER knowledge_chunk_lexemes_update AFTER UPDATE ON knowledge_chunk
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION knowledge_chunk_count_lexemes();
CREATE TRIGGER knowledge_chunk_lexemes_delete AFTER DELETE ON knowledge_chunk
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION knowledge_chunk_count_lexemes();
CREATE TRIGGER knowledge_chunk_lexemes_truncate AFTER TRUNCATE ON knowledge_chunk
    FOR EACH STATEMENT EXECUTE FUNCTION knowledge_chunk_forget_lexemes();
"""

DROP_TRIGGERS = """
DROP TRIGGER knowledge_chunk_lexemes_truncate ON knowledge_chunk;
DROP TRIGGER knowledge_chunk_lexemes_delete ON knowledge_chunk;
DROP TRIGGER knowledge_chunk_lexemes_update ON knowledge_chunk;
DROP TRIGGER knowledge_chunk_lexemes_insert ON knowledge_chunk;
DROP FUNCTION knowledge_chunk_forget_lexemes();
DROP FUNCTION knowledge_chunk_count_lexemes();
"""

# The statistics of the chunks already stored, counted once.
REBUILD = """
DELETE FROM knowledge_lexeme;
DELETE FROM knowledge_chunk_totals;
INSERT INTO knowledge_chunk_totals (id, chunks, length)
SELECT 1, count(*), coalesce(sum(knowledge_search_length(search_vector)), 0) FROM knowledge_chunk WHERE search_vector IS NOT NULL;
INSERT INTO knowledge_lexeme (lexeme, chunks)
SELECT word.lexeme, count(*) FROM knowledge_chunk CROSS JOIN unnest(search_vector) AS word
 GROUP BY word.lexeme ORDER BY word.lexeme;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0002_hnsw_m32_ef128"),
    ]

    operations = [
        migrations.RunSQL(SEARCH_LENGTH, "DROP FUNCTION knowledge_search_length(tsvector);"),
        migrations.CreateModel(
            name="Lexeme",
            fields=[
                ("lexeme", models.TextField(primary_key=True, serialize=False)),
                ("chunks", models.IntegerField()),
            ],
            options={"db_table": "knowledge_lexeme"},
        ),
        migrations.CreateModel(
            name="ChunkTotals",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("chunks", models.BigIntegerField(default=0)),
                ("length", models.BigIntegerField(default=0)),
            ],
            options={
                "verbose_name_plural": "chunk totals",
                "db_table": "knowledge_chunk_totals",
                "constraints": [
                    models.CheckConstraint(condition=models.Q(("id", 1)), name="chunk_totals_single_row")
                ],
            },
        ),
        migrations.RunSQL(TRIGGER_FUNCTION, DROP_TRIGGERS),
        migrations.RunSQL(REBUILD, migrations.RunSQL.noop),
    ]
