-- 0004_learned_contaminants: model_version also stores contaminant signatures.
--
-- `scent train contaminant` learns a confirmed contaminant's signature from the alarming
-- cycles of the batch it contaminated and stores it as kind 'contaminant', named
-- 'contaminant/<name>', with no product: the library is shared by every product and line.
-- `training` records where it was learned (line, batch, arrays, cycles, coherence) and how it
-- compares with the configured library; `scent train publish` rolls it back or forward like
-- any other model.

ALTER TABLE model_version DROP CONSTRAINT model_version_kind_check;
ALTER TABLE model_version
    ADD CONSTRAINT model_version_kind_check CHECK (kind IN ('forecast', 'contaminant'));

ALTER TABLE model_version
    ADD CONSTRAINT model_version_contaminant_name_check
        CHECK (kind <> 'contaminant' OR (product IS NULL AND name LIKE 'contaminant/_%'));
