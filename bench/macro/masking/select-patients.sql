\set start random(1, 19000)
SELECT id, name, ssn, dob, zip, email, phone, diagnosis FROM bench_patients WHERE id BETWEEN :start AND :start + 999;
