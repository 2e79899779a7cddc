-- Data trust (issue 14). AQ 4273-2016 §5.1.4 wants a dust collector's
-- pressure-difference baseline recorded within 8 h of installation or a bag
-- change; `baseline_at` (0004) says when the baseline was recorded, this says
-- when the point's equipment was last installed or serviced (bags changed), so
-- the trust.dp.baseline_age rule can tell a baseline that describes the
-- current bags from one that describes bags long gone. NULL: never serviced
-- since registration (the registration time counts as the installation).
ALTER TABLE points ADD COLUMN IF NOT EXISTS serviced_at timestamptz;
