"""The outcome page's JSON API, as shown by ``synthseq outcome serve --help`` (no imports: the CLI reads it)."""

API_SCHEMA = """\
POST /api/predict
  request  application/json: {"patient": {FIELD: value, ...}, "explain": true}
           (or multipart/form-data: patient=<that JSON object>, t2w=<NIfTI>, labels=<NIfTI>, csrf_token)
           FIELDs: age (years, 15-100), sex (M|F), neuro_level (C1..S5), ais_admission (A..E),
           uems, lems (points, 0-50), l3_motor_l|r, s1_motor_l|r (grade 0-5), l3_lt_l|r, s1_lt_l|r
           (0 absent, 1 impaired, 2 normal), days_to_rehab (days, 0-365); all required
           (+ cord_lesion_length_mm and the MRI flags for models fitted with image_features=cohort)
  200      {"results": [{"model", "target", "probability", "interval": {"low", "high", "level", "method"},
             "threshold", "positive", "answer", "log_odds", "outside_training_range": [message],
             "shap": {"base_value", "contributions": [{"feature", "label", "value", "unit", "shap"}]}}
             | {"model", "target", "unavailable": reason}],
            "van_middendorp": {"score", "probability"}, "image": {"png", "slice", "features"} | null}
  422      {"errors": {FIELD: message}}    (unknown, missing or out-of-range field; bad upload)
POST /api/batch   text/csv body (or multipart file=<CSV>, csrf_token): one row per patient with a subject
                  column and the FIELDs -> text/csv: subject, prob_/low_/high_/top_shap_<model> columns,
                  van_middendorp_score, van_middendorp_probability"""
