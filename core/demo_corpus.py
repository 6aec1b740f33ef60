"""Three small invented papers on one theme, generated as PDFs, so a demo manuscript makes sense offline.

The theme is drought, biochar and microbes in sandy arable soils at an invented field station. Every
site, author and number is made up (each PDF says so), but the papers are written like real ones and
carry facts a verifier can check: numbers with units, years, sample sizes, p-values, comparisons,
negations ("did not change"), hedged claims ("may", "suggests") and scoped claims ("in sandy soils").
The briefs in ``DEMO_BRIEFS`` can each be written from two or three of the papers.

``demo_pdfs()`` returns the same bytes on every run, so the documents keep the same sha256.
"""

from __future__ import annotations

from functools import lru_cache

from core.pdfgen import Paper, render_paper

_NOTE = "Synthetic demonstration paper: the site, authors and data are invented for the OpusBlocks Workbench demo."

LEACHING = Paper(
    title="Biochar reduces nitrate leaching from sandy soils under repeated summer drought",
    authors="Miriam Okafor, Lena Brandt and Sjoerd Veerman",
    affiliation="Department of Soil Science, University of Eastmoor (2022)",
    note=_NOTE,
    abstract=(
        "Nitrate losses from sandy arable soils rise sharply when autumn rain follows a summer drought. "
        "We ran a three-year field trial (2019-2021) at Hollin Ridge Experimental Farm with 48 plots on sandy "
        "and loamy soils to test whether biochar limits these losses. In sandy soils, biochar applied at 20 t/ha "
        "reduced cumulative nitrate leaching by 23% relative to unamended plots (p = 0.004), whereas 10 t/ha "
        "reduced it by 11%, a difference that was not statistically significant (p = 0.09). In loamy soils, "
        "neither biochar rate changed nitrate leaching. Maize grain yield did not change with biochar "
        "(p = 0.41). These results suggest that biochar may buffer nitrogen losses after drought in "
        "coarse-textured soils."
    ),
    keywords="Keywords: biochar; nitrate leaching; drought; sandy soil; maize; field trial",
    sections=(
        (
            "1. Introduction",
            (
                "Sandy soils hold little water and little nitrogen. During a summer drought, crops take up less of "
                "the applied fertiliser, and the mineral nitrogen left in the profile is washed below the root "
                "zone by the first heavy autumn rain. Leaching losses after drought years can exceed those of "
                "wet years, which makes drought a water-quality problem as well as a yield problem.",
                "Biochar, the charred product of heating biomass with little oxygen, increases water retention in "
                "coarse soils in many pot studies. Whether it also reduces nitrate leaching in the field, and "
                "whether the effect survives repeated droughts, is less clear. We therefore compared two biochar "
                "rates with compost and an unamended control over three growing seasons.",
            ),
        ),
        (
            "2. Methods",
            (
                "The trial ran from April 2019 to October 2021 at Hollin Ridge Experimental Farm, where mean "
                "annual rainfall is 610 mm. Rainout shelters excluded 60% of rainfall from June to August in "
                "each year to impose a summer drought. The trial comprised 48 plots of 6 m by 8 m: 24 plots on "
                "sandy soil (84% sand) and 24 on loamy soil (41% sand).",
                "Four treatments were applied once, in March 2019: an unamended control, biochar at 10 t/ha, "
                "biochar at 20 t/ha and green-waste compost at 20 t/ha, with six replicate plots per treatment "
                "and soil. The biochar was made from wheat straw pyrolysed at 550 degrees C. All plots received "
                "150 kg N/ha per year as calcium ammonium nitrate and were sown with maize.",
                "Leachate was collected every two weeks with suction cups installed at 90 cm depth, and nitrate "
                "was measured by flow-injection analysis. Volumetric water content at 0-30 cm was logged hourly "
                "with TDR probes. Cumulative leaching was analysed with a linear mixed model with treatment, "
                "soil and year as fixed effects and plot as a random effect; effects were considered significant "
                "at p < 0.05.",
            ),
        ),
        (
            "3. Results",
            (
                "Cumulative nitrate leaching over the three years averaged 142 kg N/ha in unamended sandy plots "
                "and 109 kg N/ha in sandy plots with 20 t/ha biochar, a reduction of 23% (p = 0.004). Plots with "
                "10 t/ha biochar lost 126 kg N/ha, 11% less than the control (p = 0.09). Compost did not reduce "
                "leaching (p = 0.57) and increased it by 6% in 2021.",
                "In loamy plots, leaching was lower overall, at 61 kg N/ha in the controls, and biochar did not "
                "change it at either rate (p = 0.71). The soil by treatment interaction was significant "
                "(p = 0.02), so the benefit of biochar was confined to the sandy soil.",
                "Leaching peaked in the first autumn after each drought: in control sandy plots, 58% of the "
                "annual nitrate loss occurred between September and November. During the drought, volumetric "
                "water content at 0-30 cm was 2.8 percentage points higher in plots with 20 t/ha biochar than in "
                "control plots (p = 0.01).",
                "Maize grain yield averaged 8.1 t/ha and did not change with biochar (p = 0.41). In 2020, the "
                "driest year of the trial, yield fell by 19% across all treatments.",
            ),
        ),
        (
            "4. Discussion",
            (
                "Biochar at 20 t/ha outperformed compost applied at the same rate in reducing nitrate leaching "
                "from sandy soil. The higher water content in biochar plots during drought suggests that more of "
                "the fertiliser nitrogen remained available to the crop, although yield did not change. Biochar "
                "may also have retained nitrate or ammonium on its surfaces, which we did not measure.",
                "The absence of any effect in loamy soil indicates that the benefit is limited to coarse-textured "
                "soils, where water retention is the main constraint. Our trial covered a single site and three "
                "years, and the effect may decline as biochar ages in the field. We did not measure nitrous oxide "
                "emissions, so we cannot exclude that lower leaching was offset by higher gaseous losses.",
            ),
        ),
        (
            "References",
            (
                "Brandt, L., Quispe, A. and Okafor, M. (2021) Rainout shelters for long-term drought trials. "
                "Eastmoor Field Methods 4, 12-19.",
            ),
        ),
    ),
)

MICROBES = Paper(
    title="Repeated drought reshapes the bacterial community of sandy soils, and biochar dampens the shift",
    authors="Lena Brandt, Ana Quispe and Miriam Okafor",
    affiliation="Institute of Soil Ecology, University of Eastmoor (2023)",
    note=_NOTE,
    abstract=(
        "Drought changes which soil bacteria thrive, and these changes may alter nitrogen cycling after "
        "rewetting. We sequenced the 16S rRNA gene in 144 soil samples from the sandy plots of the Hollin "
        "Ridge biochar trial in 2020 and 2021. Drought increased the relative abundance of Actinobacteria from "
        "18% to 27% in unamended plots. Bacterial diversity (Shannon index) fell from 6.2 to 5.3 under drought "
        "in control plots (p < 0.001) but only to 5.9 in plots with 20 t/ha biochar. Copies of the bacterial "
        "amoA gene, a marker of ammonia-oxidising bacteria, fell by 41% under drought in control plots and by "
        "12% in biochar plots. The fungal-to-bacterial ratio did not differ between treatments (p = 0.62). We "
        "propose that biochar may preserve a more stable nitrifier community, which could help explain lower "
        "nitrate leaching after drought."
    ),
    keywords="Keywords: 16S rRNA; Actinobacteria; amoA; nitrification; biochar; drought",
    sections=(
        (
            "1. Introduction",
            (
                "Soil bacteria differ in how well they tolerate drying. Thick-walled, spore-forming groups such as "
                "Actinobacteria usually survive drought better than Acidobacteria or Proteobacteria, so each "
                "drought can shift the community towards tolerant taxa. Nitrifiers, which convert ammonium to "
                "nitrate, are sensitive to water stress, and their recovery after rewetting controls how quickly "
                "nitrate accumulates in the soil.",
                "In the Hollin Ridge trial, biochar at 20 t/ha reduced nitrate leaching from sandy soil by 23% "
                "(Okafor et al., 2022). Here we asked whether biochar also changes how the bacterial community "
                "responds to drought.",
            ),
        ),
        (
            "2. Methods",
            (
                "Soil from 0-15 cm was sampled in June (before the drought), in August (at the end of the drought) "
                "and in October (after rewetting) of 2020 and 2021. Sampling covered the four treatments of the "
                "sandy plots with six replicates each, giving 144 samples in total. Loamy plots were not sampled.",
                "DNA was extracted from 0.25 g of soil, and the V4 region of the 16S rRNA gene was sequenced on an "
                "Illumina MiSeq, with a mean of 38,000 reads per sample after quality filtering. Bacterial and "
                "archaeal amoA genes were quantified by qPCR. Community composition was compared with PERMANOVA "
                "on Bray-Curtis distances with 999 permutations, and diversity and gene copies with linear mixed "
                "models.",
            ),
        ),
        (
            "3. Results",
            (
                "Community composition differed between drought and non-drought samples (PERMANOVA R2 = 0.21, "
                "p = 0.001), and treatment explained less of the variance (R2 = 0.06, p = 0.003). Drought "
                "increased the relative abundance of Actinobacteria from 18% to 27% in control plots, while "
                "Acidobacteria decreased from 14% to 9%.",
                "The Shannon index fell from 6.2 before drought to 5.3 at the end of drought in control plots "
                "(p < 0.001), and to 5.9 in plots with 20 t/ha biochar. By October, diversity in biochar plots "
                "had returned to its pre-drought level, whereas in control plots it remained 8% lower.",
                "Bacterial amoA copies fell by 41% under drought in control plots but only by 12% in plots with "
                "20 t/ha biochar (interaction p = 0.02). Archaeal amoA did not change with drought (p = 0.35). "
                "The fungal-to-bacterial ratio was 0.31 in control plots and 0.29 in biochar plots, which did not "
                "differ (p = 0.62). Compost plots did not differ from control plots in any measure.",
            ),
        ),
        (
            "4. Discussion",
            (
                "Drought acted as a filter that favoured Actinobacteria in sandy soil, consistent with their "
                "known tolerance of desiccation. Biochar dampened this shift and sped up the recovery of "
                "diversity. The larger volume of water-filled pores in biochar-amended soil may provide refuges "
                "in which sensitive bacteria survive the drought.",
                "The smaller loss of ammonia-oxidising bacteria suggests that nitrification continued at a steadier "
                "rate in biochar plots, which could reduce the flush of nitrate after rewetting. However, we did "
                "not measure nitrification rates directly, and our data show associations, not causes. Because "
                "only sandy plots were sampled, these findings apply to sandy soils.",
            ),
        ),
        (
            "References",
            (
                "Okafor, M., Brandt, L. and Veerman, S. (2022) Biochar reduces nitrate leaching from sandy soils "
                "under repeated summer drought. University of Eastmoor.",
            ),
        ),
    ),
)

INOCULANT = Paper(
    title="A drought-tolerant Bacillus inoculant improves maize water-use efficiency in sandy but not loamy soil",
    authors="Sjoerd Veerman, Ana Quispe and Johan Lindqvist",
    affiliation="Plant-Soil Interactions Group, University of Eastmoor (2024)",
    note=_NOTE,
    abstract=(
        "Microbial inoculants are marketed to help crops cope with drought, but their benefit may depend on "
        "soil texture. In a greenhouse experiment in 2022 with 60 pots of sandy or loamy soil from Hollin "
        "Ridge, maize was exposed to a five-week drought at a day temperature of 35 degrees C. Inoculation with "
        "Bacillus sp. HR-14 increased water-use efficiency by 17% in sandy soil (p = 0.01) but did not change "
        "it in loamy soil (p = 0.48). Combined with biochar at a rate equivalent to 20 t/ha, water-use "
        "efficiency rose by 26% in sandy soil, outperforming the inoculant alone. The results suggest that "
        "inoculation may complement biochar in drought-prone sandy soils, although field trials are needed."
    ),
    keywords="Keywords: plant growth-promoting bacteria; Bacillus; water-use efficiency; maize; biochar; drought",
    sections=(
        (
            "1. Introduction",
            (
                "Some soil bacteria help plants withstand drought by producing exopolysaccharides that hold water "
                "around roots or by lowering the stress hormone ethylene. Strain HR-14 was isolated from the "
                "rhizosphere of maize in the driest plots of the Hollin Ridge trial in 2020.",
                "Field data from the same site show that biochar retains water in sandy soil during drought "
                "(Okafor et al., 2022) and dampens drought-induced shifts in the bacterial community (Brandt et "
                "al., 2023). We tested whether the inoculant improves water-use efficiency on its own and together "
                "with biochar.",
            ),
        ),
        (
            "2. Methods",
            (
                "The experiment used 60 pots: two soils (sandy and loamy) by five treatments by six replicates. "
                "The treatments were an uninoculated control, the inoculant, biochar, the inoculant with biochar, "
                "and a heat-killed inoculant. Each inoculated pot received about 100 million colony-forming units "
                "at sowing. Biochar was mixed into the soil at a rate equivalent to 20 t/ha.",
                "Maize was grown at day and night temperatures of 35 and 22 degrees C. From the six-leaf stage, "
                "pots were watered to 40% of water-holding capacity for five weeks. Water-use efficiency was "
                "calculated as shoot dry biomass per litre of water transpired. Treatments were compared within "
                "each soil by analysis of variance with Dunnett's test against the control.",
            ),
        ),
        (
            "3. Results",
            (
                "In sandy soil, water-use efficiency was 2.9 g/L in control pots, 3.4 g/L with the inoculant "
                "(+17%, p = 0.01), 3.3 g/L with biochar (+14%, p = 0.03) and 3.65 g/L with both (+26%, "
                "p < 0.001). The heat-killed inoculant had no effect (p = 0.88), indicating that living cells "
                "were required.",
                "In loamy soil, the inoculant did not change water-use efficiency (p = 0.48), and neither did "
                "biochar (p = 0.52). Root biomass increased by 19% with the inoculant in sandy soil (p = 0.02), "
                "and leaf relative water content at the end of the drought was 71% in inoculated plants compared "
                "with 64% in control plants.",
                "Strain HR-14 was recovered from 83% of inoculated root systems at harvest and from none of the "
                "control plants.",
            ),
        ),
        (
            "4. Discussion",
            (
                "The inoculant improved water-use efficiency only in sandy soil, where water stress was most "
                "severe. The combination with biochar outperformed either treatment alone, but the gain was less "
                "than additive, which suggests that the two act partly through the same mechanism of keeping "
                "water near the roots. The strain may produce exopolysaccharides, but we did not measure them.",
                "Pots restrict root depth, we tested one maize cultivar and a single five-week drought, and the "
                "benefit may not transfer to the field. A field trial on the sandy plots at Hollin Ridge is "
                "planned for 2025.",
            ),
        ),
        (
            "References",
            (
                "Brandt, L., Quispe, A. and Okafor, M. (2023) Repeated drought reshapes the bacterial community "
                "of sandy soils, and biochar dampens the shift. University of Eastmoor.",
                "Okafor, M., Brandt, L. and Veerman, S. (2022) Biochar reduces nitrate leaching from sandy soils "
                "under repeated summer drought. University of Eastmoor.",
            ),
        ),
    ),
)

DEMO_PAPERS: tuple[tuple[str, Paper], ...] = (
    ("okafor-2022-biochar-nitrate-leaching.pdf", LEACHING),
    ("brandt-2023-drought-soil-bacteria.pdf", MICROBES),
    ("veerman-2024-bacillus-inoculant-maize.pdf", INOCULANT),
)

DEMO_MANUSCRIPT_TITLE = "Biochar and microbes as buffers against drought in sandy arable soils"

DEMO_BRIEFS: list[str] = [
    "Summarise the field evidence that biochar reduces nitrate leaching from sandy soils after drought: how "
    "large the effect was, at which application rate, and where it was not observed.",
    "Describe how repeated drought changes the soil bacterial community and nitrifiers, and how biochar may "
    "dampen these changes; keep hedged findings hedged and say what was not measured.",
    "Compare the drought benefit of the Bacillus inoculant alone with its combination with biochar, including "
    "the soil type in which the inoculant had no effect.",
]
"""Paragraph briefs a demo manuscript can be drafted from; each draws on two or three of the papers."""


@lru_cache(maxsize=1)
def _rendered() -> tuple[tuple[str, bytes], ...]:
    return tuple((filename, render_paper(paper)) for filename, paper in DEMO_PAPERS)


def demo_pdfs() -> list[tuple[str, bytes]]:
    """The demo papers as (filename, PDF bytes); the bytes are identical on every run."""
    return list(_rendered())
